//! The canonical ABI of wit-bindgen plugins on core modules: the tark WIT contract
//! ([`contract`]), types and values ([`types`]), lifting and lowering ([`lift`]), host
//! imports ([`imports`]) and export calls ([`instance`]).

pub mod contract;
pub mod imports;
pub mod instance;
pub mod lift;
pub mod types;
