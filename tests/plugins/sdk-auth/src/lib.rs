//! The SDK guide's minimal auth plugin (tark `docs/PLUGIN_DEVELOPMENT.md`, "Quick Start",
//! step 5), rewritten here against this host's copy of the contract.
//!
//! It keeps the guide's shape: bindings from `generate!` for `auth-world`, a token kept in
//! storage under `access_token`, a device flow that POSTs to the auth server. Only what
//! stops the guide's code from compiling against the WIT is changed; every such change is
//! marked `// SDK guide fix:`. One test adaptation (not in the guide): the auth server's
//! base URL is read from storage key `auth_base`, so tests can use a local server.

// Generate the bindings. The guide uses `path: "tark.wit"` (a copy next to Cargo.toml);
// here the crate points at the repository's wit/ directory (tark.wit + our additions).
wit_bindgen::generate!({
    world: "auth-world",
    path: "../../../wit",
});

use exports::tark::plugin::auth_plugin::{AuthStatus, DeviceCode, Guest, PollResult};
use tark::plugin::{http, storage};

/// Where the guide's code talks to when nothing else is configured.
const DEFAULT_AUTH_BASE: &str = "https://auth.example.com";

/// Test adaptation: the auth server base URL, from storage key `auth_base` when set.
fn auth_base() -> String {
    storage::get("auth_base").unwrap_or_else(|| DEFAULT_AUTH_BASE.to_string())
}

/// The guide's JSON request header.
fn json_headers() -> Vec<(String, String)> {
    // SDK guide fix: the WIT's header list is `list<tuple<string, string>>`, which
    // wit-bindgen maps to `&[(String, String)]`; the guide passes `vec![(&str, &str)]`.
    vec![("Content-Type".to_string(), "application/json".to_string())]
}

struct MyAuthPlugin;

impl Guest for MyAuthPlugin {
    fn display_name() -> String {
        "My Auth Provider".to_string()
    }

    fn status() -> AuthStatus {
        // Authenticated exactly when a token is stored.
        match storage::get("access_token") {
            Some(_) => AuthStatus::Authenticated,
            None => AuthStatus::NotAuthenticated,
        }
    }

    fn start_device_flow() -> Result<DeviceCode, String> {
        let base = auth_base();
        // Ask the auth server to start a device flow.
        // As in the guide the response body is not parsed (the guide's `response` binding
        // is unused, hence `_response`: a warning, not a compile error, so not a fix).
        let _response = http::post(
            &format!("{base}/device/code"),
            r#"{"client_id":"my-client"}"#,
            // SDK guide fix: pass the header list by reference, as `&[(String, String)]`.
            &json_headers(),
        )
        .map_err(|e| format!("HTTP error: {:?}", e))?;

        // As in the guide: fixed placeholder values for the user.
        Ok(DeviceCode {
            device_code: "device-code-123".to_string(),
            user_code: "USER-CODE".to_string(),
            // SDK guide fix: the record field is `verification-url`, not `verification_uri`.
            verification_url: format!("{base}/device"),
            expires_in: 900,
            interval: 5,
        })
    }

    fn poll(device_code: String) -> PollResult {
        // Ask the auth server whether the user has approved the device code.
        match http::post(
            &format!("{}/token", auth_base()),
            &format!(r#"{{"device_code":"{}"}}"#, device_code),
            // SDK guide fix: pass the header list by reference, as `&[(String, String)]`.
            &json_headers(),
        ) {
            Ok(response) if response.status == 200 => {
                // The response body is the token; keep it.
                let _ = storage::set("access_token", &response.body);
                // SDK guide fix: `success` carries a string payload in the WIT
                // (`success(string)`); the guide returns a bare `PollResult::Success`.
                PollResult::Success(response.body)
            }
            Ok(response) if response.status == 400 => PollResult::Pending,
            Ok(_) => PollResult::Error("Unexpected response".to_string()),
            Err(e) => PollResult::Error(format!("Request failed: {:?}", e)),
        }
    }

    fn get_token() -> Result<String, String> {
        storage::get("access_token").ok_or_else(|| "Not authenticated".to_string())
    }

    fn logout() -> Result<(), String> {
        storage::delete("access_token")
    }
}

export!(MyAuthPlugin);
