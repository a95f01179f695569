//! `tark:env`: read allowlisted host environment variables.

use super::PluginContext;

/// Why `env.get` gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// Not on the plugin's `env` allowlist.
    #[error("environment variable not allowed: {0}")]
    Denied(String),
    /// The value is longer than the limit.
    #[error("environment value too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// Value size.
        size: usize,
        /// Limit.
        limit: usize,
    },
}

/// Read `name` if allowed. Unset or non-Unicode values are None (tark: `""`). Names
/// that cannot be environment variable names (empty, containing `=` or NUL) are None.
/// Values longer than `limits.env_value_max` are refused rather than truncated.
pub fn get(ctx: &PluginContext, name: &str) -> Result<Option<String>, EnvError> {
    if !ctx.policy.env_allowed(name) {
        // The policy has logged the denial with tark's text.
        return Err(EnvError::Denied(name.to_string()));
    }
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Ok(None);
    }
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    let Ok(value) = value.into_string() else {
        return Ok(None);
    };
    let limit = ctx.limits.env_value_max;
    if value.len() > limit {
        log::warn!(
            "[plugin:{}] env.get({name}) refused: value is {} bytes, limit {limit}",
            ctx.plugin_id,
            value.len()
        );
        return Err(EnvError::TooLarge {
            size: value.len(),
            limit,
        });
    }
    Ok(Some(value))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::host::{HostConfig, HostServices};
    use crate::limits::Limits;
    use crate::manifest::PluginCapabilities;
    use crate::policy::PolicyConfig;
    use std::path::Path;
    use std::sync::Arc;

    /// A real plugin context for host-service unit tests.
    pub(crate) fn context(
        caps: &PluginCapabilities,
        limits: Limits,
        workspace: &Path,
        data_dir: &Path,
    ) -> Arc<PluginContext> {
        let services = HostServices::new(HostConfig {
            limits: limits.clone(),
            policy: PolicyConfig {
                workspace_root: workspace.to_path_buf(),
                home_dir: None,
                strict_https: false,
            },
            extra_ca_pem: Vec::new(),
        })
        .unwrap();
        PluginContext::new(services, "test-plugin", caps, data_dir, limits).unwrap()
    }

    #[test]
    fn env_get_rules() {
        // Unique names: the process environment is shared by parallel tests, and no
        // other code reads these variables.
        std::env::set_var("TARK_WASMER_ENVTEST_A", "alpha");
        std::env::set_var("TARK_WASMER_ENVTEST_PRE_B", "beta");
        std::env::set_var("TARK_WASMER_ENVTEST_BIG", "x".repeat(40));
        std::env::set_var("TARK_WASMER_ENVTEST_DENIED", "secret");
        let tmp = tempfile::tempdir().unwrap();
        let caps = PluginCapabilities {
            env: vec![
                "TARK_WASMER_ENVTEST_A".into(),
                "TARK_WASMER_ENVTEST_PRE_*".into(),
                "TARK_WASMER_ENVTEST_BIG".into(),
                "TARK_WASMER_ENVTEST_UNSET".into(),
            ],
            ..Default::default()
        };
        let limits = Limits {
            env_value_max: 32,
            ..Default::default()
        };
        let ctx = context(&caps, limits, tmp.path(), &tmp.path().join("data"));
        assert_eq!(
            get(&ctx, "TARK_WASMER_ENVTEST_A").unwrap().as_deref(),
            Some("alpha")
        );
        assert_eq!(
            get(&ctx, "TARK_WASMER_ENVTEST_PRE_B").unwrap().as_deref(),
            Some("beta")
        );
        assert_eq!(get(&ctx, "TARK_WASMER_ENVTEST_UNSET").unwrap(), None);
        assert_eq!(get(&ctx, "TARK_WASMER_ENVTEST_PRE_UNSET").unwrap(), None);
        assert_eq!(
            get(&ctx, "TARK_WASMER_ENVTEST_DENIED"),
            Err(EnvError::Denied("TARK_WASMER_ENVTEST_DENIED".into()))
        );
        assert_eq!(
            get(&ctx, "TARK_WASMER_ENVTEST_BIG"),
            Err(EnvError::TooLarge {
                size: 40,
                limit: 32
            })
        );
        // Odd names on a wildcard list are just unset, never a panic.
        let star = PluginCapabilities {
            env: vec!["*".into()],
            ..Default::default()
        };
        let ctx = context(
            &star,
            Limits::default(),
            tmp.path(),
            &tmp.path().join("data"),
        );
        assert_eq!(get(&ctx, "").unwrap(), None);
        assert_eq!(get(&ctx, "A=B").unwrap(), None);
        assert_eq!(get(&ctx, "A\0B").unwrap(), None);
        assert_eq!(
            get(&ctx, "TARK_WASMER_ENVTEST_DENIED").unwrap().as_deref(),
            Some("secret")
        );
    }

    #[cfg(unix)]
    #[test]
    fn env_non_unicode_is_none() {
        use std::os::unix::ffi::OsStrExt;
        std::env::set_var(
            "TARK_WASMER_ENVTEST_BYTES",
            std::ffi::OsStr::from_bytes(b"\xff\xfe"),
        );
        let tmp = tempfile::tempdir().unwrap();
        let caps = PluginCapabilities {
            env: vec!["TARK_WASMER_ENVTEST_BYTES".into()],
            ..Default::default()
        };
        let ctx = context(
            &caps,
            Limits::default(),
            tmp.path(),
            &tmp.path().join("data"),
        );
        assert_eq!(get(&ctx, "TARK_WASMER_ENVTEST_BYTES").unwrap(), None);
    }
}
