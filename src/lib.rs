//! tark-wasmer: a plugin host for tark built on wasmer.
//!
//! Data flows one way: `plugin.toml` -> [`manifest`] -> [`registry`] -> [`engine`]
//! (compile or load) -> instance with host services ([`host`]) wired through one ABI
//! adapter ([`abi`]) -> typed plugin handle ([`plugin`]) -> caller.

pub mod abi;
pub mod cache;
pub mod engine;
pub mod error;
pub mod host;
pub mod limits;
pub mod manifest;
pub mod plugin;
pub mod policy;
pub mod registry;
pub mod tark;

pub use error::{Error, Result};
pub use limits::Limits;
pub use manifest::{PluginCapabilities, PluginManifest, PluginType};
pub use plugin::{HostOptions, PluginHost, PluginInstance};
pub use registry::{InstalledPlugin, PluginRegistry};
