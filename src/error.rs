//! Library error type.

/// Errors returned by the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder.
    #[error("{0}")]
    Other(String),
}

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
