//! tark's legacy host-function ABI: `tark:*` imports ([`imports`]) and the export
//! calling conventions R, P, PR, S and V ([`instance`]).

pub mod imports;
pub mod instance;
