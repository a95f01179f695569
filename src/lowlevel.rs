//! The ABI adapters themselves, for conformance tests, fuzzers and benchmarks that need to
//! drive one wasm instance directly: a legacy or canonical instance over host services,
//! dynamic canonical values and the parsed WIT contract. Running plugins needs none of
//! this ([`crate::PluginHost`] is the way in); these items carry no stability promise.

pub use crate::abi::canonical::contract::{Contract, FuncSig};
pub use crate::abi::canonical::instance::CanonicalInstance;
pub use crate::abi::canonical::lift::AbiError;
pub use crate::abi::canonical::typed::{ComponentType, Lift, Lower, TypedExport};
pub use crate::abi::canonical::types::{Ty, Val};
pub use crate::abi::legacy::imports::LEGACY_IMPORTS;
pub use crate::abi::legacy::instance::{CallOutcome, LegacyInstance, Output};
pub use crate::host::http::{HttpError, HttpMethod, HttpResponse};
pub use crate::host::storage::{StoreRegistry, RECHECK_INTERVAL as STORAGE_RECHECK_INTERVAL};
pub use crate::host::ws::{WsError, WsEvent};
pub use crate::host::{next_owner_id, HostServices, OwnerId, PluginContext};

/// The typed canonical ABI (the `Lift`/`Lower` traits and their helpers), the path the
/// `canonical_record!`, `canonical_enum!` and `canonical_variant!` macros expand to.
pub mod typed {
    pub use crate::abi::canonical::typed::*;
}

/// The checked guest-memory reader and writer the typed ABI builds on.
pub mod lift {
    pub use crate::abi::canonical::lift::*;
}

/// Canonical ABI types and dynamic values described from the WIT contract.
pub mod types {
    pub use crate::abi::canonical::types::*;
}
