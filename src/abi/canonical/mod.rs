//! The canonical ABI of wit-bindgen plugins on core modules: the tark WIT contract
//! ([`contract`]), types and values ([`types`]), lifting and lowering ([`lift`]), host
//! imports ([`imports`]), export calls ([`instance`]) and typed export calls that skip
//! the dynamic values ([`typed`]).

pub mod contract;
pub mod imports;
pub mod instance;
pub mod lift;
pub mod typed;
pub mod types;
