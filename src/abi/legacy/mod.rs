//! tark's legacy host-function ABI: `tark:*` imports ([`imports`]) and the export
//! calling conventions R, P, PR, S and V ([`instance`]).

pub mod imports;
pub mod instance;

pub use imports::{provided_signature, LegacyEnv, LEGACY_IMPORTS};
pub use instance::{LegacyInstance, Output};
