//! `tark:fs`: read-only access to allowlisted files.

use std::io::Read;

use super::PluginContext;
use crate::policy::FsOpenError;

/// Why `fs.read` failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Not on the `fs_read` allowlist (legacy code -2).
    #[error("path not allowed: {0}")]
    Denied(String),
    /// Allowed, but reading failed: missing, a directory, not UTF-8, ... (legacy -3).
    #[error("read failed: {0}")]
    Io(String),
    /// The file is larger than the limit (legacy -3).
    #[error("file too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// File size.
        size: u64,
        /// Limit.
        limit: usize,
    },
}

/// Why `fs.read` fails in the JS backend.
#[cfg(not(feature = "sys"))]
pub const FS_UNAVAILABLE: &str =
    "files are not available in the JS backend: a wasm32 host in a JavaScript engine has no file system";

/// Read a file the plugin may read. The policy opens the checked file; we read that
/// handle, refusing files over `limits.fs_read_max` (checked before reading and again
/// while reading, since the file may grow) and content that is not UTF-8.
#[cfg_attr(not(feature = "sys"), allow(unreachable_code, unused_variables))]
pub fn read(ctx: &PluginContext, path: &str) -> Result<String, FsError> {
    // A wasm32 host in a JavaScript engine has no file system to read from.
    #[cfg(not(feature = "sys"))]
    {
        log::warn!(
            "[plugin:{}] fs.read({path}): {FS_UNAVAILABLE}",
            ctx.plugin_id
        );
        return Err(FsError::Io(FS_UNAVAILABLE.to_string()));
    }
    let (file, real) = ctx.policy.fs_open(path).map_err(|e| match e {
        // The policy has logged the denial with tark's text.
        FsOpenError::Denied(_) => FsError::Denied(path.to_string()),
        FsOpenError::Io(e) => {
            log::debug!("[plugin:{}] fs.read failed: {e}", ctx.plugin_id);
            FsError::Io(e.to_string())
        }
    })?;
    log::debug!("[plugin:{}] fs.read({path})", ctx.plugin_id);
    let limit = ctx.limits.fs_read_max;
    let limit64 = u64::try_from(limit).unwrap_or(u64::MAX);
    let too_large = |size: u64| {
        log::warn!(
            "[plugin:{}] fs.read({path}) refused: {} is {size} bytes, limit {limit}",
            ctx.plugin_id,
            real.display()
        );
        FsError::TooLarge { size, limit }
    };
    let size = file
        .metadata()
        .map_err(|e| FsError::Io(e.to_string()))?
        .len();
    if size > limit64 {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(limit));
    file.take(limit64.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FsError::Io(e.to_string()))?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limit64 {
        return Err(too_large(read));
    }
    String::from_utf8(bytes).map_err(|_| {
        log::debug!(
            "[plugin:{}] fs.read failed: {} is not valid UTF-8",
            ctx.plugin_id,
            real.display()
        );
        FsError::Io("not valid UTF-8".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::env::tests::context;
    use crate::limits::Limits;
    use crate::manifest::PluginCapabilities;

    #[test]
    fn fs_read_end_to_end() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(ws.join("docs/sub")).unwrap();
        std::fs::write(ws.join("docs/a.txt"), "héllo").unwrap();
        std::fs::write(ws.join("docs/exact.txt"), "0123456789").unwrap();
        std::fs::write(ws.join("docs/big.txt"), "01234567890").unwrap();
        std::fs::write(ws.join("docs/bin.dat"), b"\xff\xfe\x00").unwrap();
        std::fs::write(ws.join("secret.txt"), "s").unwrap();
        let caps = PluginCapabilities {
            fs_read: vec!["docs".into()],
            ..Default::default()
        };
        let limits = Limits {
            fs_read_max: 10,
            ..Default::default()
        };
        let ctx = context(&caps, limits, &ws, &ws.join("data"));
        assert_eq!(read(&ctx, "docs/a.txt").unwrap(), "héllo");
        assert_eq!(
            read(&ctx, &ws.join("docs/exact.txt").display().to_string()).unwrap(),
            "0123456789"
        );
        assert!(matches!(
            read(&ctx, "docs/big.txt"),
            Err(FsError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
        assert!(
            matches!(read(&ctx, "docs/bin.dat"), Err(FsError::Io(m)) if m == "not valid UTF-8")
        );
        assert!(matches!(
            read(&ctx, "docs/missing.txt"),
            Err(FsError::Io(_))
        ));
        assert!(matches!(read(&ctx, "docs/sub"), Err(FsError::Io(m)) if m.contains("directory")));
        assert!(matches!(read(&ctx, "secret.txt"), Err(FsError::Denied(p)) if p == "secret.txt"));
        assert!(matches!(
            read(&ctx, "docs/../secret.txt"),
            Err(FsError::Denied(_))
        ));
    }
}
