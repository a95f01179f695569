//! `tool-kit`: an example tool plugin built with wit-bindgen 0.36 (world `tool-world`, target
//! wasm32-wasip1): a core module speaking the canonical ABI (see canonical-abi.md).
//!
//! Five tools, one per interesting path through the host:
//! - `word_count` (read-only): pure computation.
//! - `json_pretty` (read-only): pure computation with a failure path.
//! - `read_file` (read-only): reads through the `fs` import (capability `fs_read`).
//! - `fetch_status` (risky): `GET {TOOL_KIT_API}{path}` through the `http` import, where
//!   `TOOL_KIT_API` comes from the `env` import (capability `env`).
//! - `delete_everything` (dangerous): never does anything; always refuses.
//!
//! Arguments are JSON text; every failure is a `tool-result` with `success: false` and the
//! reason in `error` (host messages are passed through unchanged).

wit_bindgen::generate!({
    world: "tool-world",
    path: "../../../wit",
});

use exports::tark::plugin::tool_plugin::{Guest, RiskLevel, ToolDef, ToolResult};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tark::plugin::{env, fs, http};

struct ToolKit;

export!(ToolKit);

/// The env variable naming the base URL of `fetch_status`.
const API_VAR: &str = "TOOL_KIT_API";

/// An object JSON Schema (draft 2020-12 style) with string properties, all required.
fn object_schema(props: &[(&str, &str)]) -> String {
    let mut properties = serde_json::Map::new();
    for (name, description) in props {
        properties.insert(
            (*name).to_string(),
            json!({ "type": "string", "description": description }),
        );
    }
    let required: Vec<&str> = props.iter().map(|(name, _)| *name).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
    .to_string()
}

fn tool(name: &str, description: &str, props: &[(&str, &str)]) -> ToolDef {
    ToolDef {
        name: name.to_string(),
        description: description.to_string(),
        parameters_schema: object_schema(props),
    }
}

fn ok(output: String) -> ToolResult {
    ToolResult {
        success: true,
        output,
        error: None,
    }
}

fn fail(error: impl Into<String>) -> ToolResult {
    ToolResult {
        success: false,
        output: String::new(),
        error: Some(error.into()),
    }
}

#[derive(Deserialize)]
struct TextArgs {
    text: String,
}

#[derive(Deserialize)]
struct JsonArgs {
    json: String,
}

#[derive(Deserialize)]
struct PathArgs {
    path: String,
}

/// Parses the argument JSON into `T`; the error is the `tool-result` to return.
fn args<T: DeserializeOwned>(arguments: &str) -> Result<T, ToolResult> {
    let value: Value =
        serde_json::from_str(arguments).map_err(|e| fail(format!("invalid arguments: {e}")))?;
    serde_json::from_value(value).map_err(|e| fail(format!("invalid arguments: {e}")))
}

fn word_count(arguments: &str) -> Result<ToolResult, ToolResult> {
    let a: TextArgs = args(arguments)?;
    Ok(ok(a.text.split_whitespace().count().to_string()))
}

fn json_pretty(arguments: &str) -> Result<ToolResult, ToolResult> {
    let a: JsonArgs = args(arguments)?;
    let value: Value =
        serde_json::from_str(&a.json).map_err(|e| fail(format!("invalid JSON: {e}")))?;
    serde_json::to_string_pretty(&value)
        .map(ok)
        .map_err(|e| fail(format!("cannot format JSON: {e}")))
}

fn read_file(arguments: &str) -> Result<ToolResult, ToolResult> {
    let a: PathArgs = args(arguments)?;
    fs::read(&a.path)
        .map(ok)
        .map_err(|e| fail(format!("fs.read: {e}")))
}

fn fetch_status(arguments: &str) -> Result<ToolResult, ToolResult> {
    let a: PathArgs = args(arguments)?;
    let base = env::get(API_VAR)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| fail(format!("{API_VAR} is not set")))?;
    let base = base.trim();
    let url = if a.path.starts_with('/') {
        format!("{}{}", base.trim_end_matches('/'), a.path)
    } else {
        format!("{base}{}", a.path)
    };
    let resp = http::get(&url, &[]).map_err(|e| fail(e.message))?;
    // Written by hand to keep the documented key order (serde_json sorts object keys).
    Ok(ok(format!(
        "{{\"status\":{},\"body_len\":{}}}",
        resp.status,
        resp.body.len()
    )))
}

impl Guest for ToolKit {
    fn get_tools() -> Vec<ToolDef> {
        vec![
            tool(
                "word_count",
                "Counts the whitespace-separated words of a text.",
                &[("text", "The text to count words in.")],
            ),
            tool(
                "json_pretty",
                "Pretty-prints a JSON document.",
                &[("json", "The JSON document, as text.")],
            ),
            tool(
                "read_file",
                "Reads a text file the plugin is allowed to read.",
                &[("path", "Absolute path of the file.")],
            ),
            tool(
                "fetch_status",
                "GETs a path of the configured API and reports the HTTP status and body length.",
                &[(
                    "path",
                    "Path (and query) appended to the API base URL, e.g. /health.",
                )],
            ),
            tool(
                "delete_everything",
                "Would delete everything. Always refuses.",
                &[],
            ),
        ]
    }

    fn get_risk_level(tool_name: String) -> RiskLevel {
        match tool_name.as_str() {
            "word_count" | "json_pretty" | "read_file" => RiskLevel::ReadOnly,
            "fetch_status" => RiskLevel::Risky,
            _ => RiskLevel::Dangerous,
        }
    }

    fn execute(tool_name: String, arguments: String) -> ToolResult {
        let result = match tool_name.as_str() {
            "word_count" => word_count(&arguments),
            "json_pretty" => json_pretty(&arguments),
            "read_file" => read_file(&arguments),
            "fetch_status" => fetch_status(&arguments),
            "delete_everything" => Err(fail("refused")),
            other => Err(fail(format!("unknown tool: {other}"))),
        };
        result.unwrap_or_else(|failure| failure)
    }
}
