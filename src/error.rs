//! The library's error type: one enum that says which stage failed and for which plugin.

use crate::abi::{CallError, InstantiateError};
use crate::engine::EngineError;
use crate::host::HostError;
use crate::manifest::ManifestError;
use crate::registry::RegistryError;

/// Errors returned by the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `plugin.toml` is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The plugins directory or an installed plugin is not usable.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Compiling or loading the module failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Host services could not be set up.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The plugin could not be instantiated.
    #[error("plugin {plugin}: {source}")]
    Instantiate {
        /// Plugin id.
        plugin: String,
        /// Cause.
        source: InstantiateError,
    },
    /// A call into the plugin failed.
    #[error("{}", call_message(plugin, source))]
    Call {
        /// Plugin id.
        plugin: String,
        /// Cause.
        source: CallError,
    },
    /// No plugin with this id is installed (or loaded).
    #[error("Plugin '{0}' not found")]
    NotFound(String),
    /// The plugin is installed but disabled.
    #[error("Plugin '{0}' is disabled (enable it with `tark-wasmer plugin enable {0}`)")]
    Disabled(String),
    /// The operation needs another plugin type.
    #[error("plugin {plugin} is a {found} plugin; '{operation}' needs a {expected} plugin")]
    WrongType {
        /// Plugin id.
        plugin: String,
        /// The operation.
        operation: String,
        /// Needed type.
        expected: String,
        /// Actual type.
        found: String,
    },
    /// A canonical module was built for another world than its manifest type needs.
    #[error("plugin {plugin} is built for world {world}, but its manifest type '{plugin_type}' needs {expected}: fix [plugin] type in plugin.toml or rebuild against the right world")]
    WrongWorld {
        /// Plugin id.
        plugin: String,
        /// Detected world.
        world: String,
        /// Manifest type.
        plugin_type: String,
        /// World the type needs.
        expected: String,
    },
    /// The caller passed an argument of the wrong shape.
    #[error("{0}")]
    InvalidArgument(String),
}

/// `plugin <id>: <cause>`, unless the cause already names the plugin (the limit errors'
/// fixed wording: "plugin <id> exceeded its CPU budget in <function>").
fn call_message(plugin: &str, source: &CallError) -> String {
    if source.is_limit() {
        source.to_string()
    } else {
        format!("plugin {plugin}: {source}")
    }
}

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
