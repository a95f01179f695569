//! The records of tark's plugin interfaces (`tark.wit`) as Rust types. They are the
//! typed values every plugin handle returns, whichever ABI the plugin speaks. Serde
//! gives the JSON mapping of `tark-wasmer call`: records are objects with snake_case
//! keys, enums are their kebab-case case names. The canonical ABI lifts and lowers them
//! directly (`abi::canonical::typed`), so they live here, below both `abi` and `plugin`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `auth-plugin` `auth-status` (legacy `status`: 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthStatus {
    /// No usable credentials.
    NotAuthenticated,
    /// Credentials present.
    Authenticated,
    /// Credentials expired.
    Expired,
}

impl AuthStatus {
    /// tark's mapping of the legacy `status` code (unknown codes: not authenticated).
    pub fn from_legacy_code(code: i32) -> Self {
        match code {
            1 => AuthStatus::Authenticated,
            2 => AuthStatus::Expired,
            _ => AuthStatus::NotAuthenticated,
        }
    }
}

/// `provider-plugin` / `channel-plugin` auth status (the WIT's renamed
/// `provider-auth-status` / `channel-auth-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderAuthStatus {
    /// The plugin needs no credentials.
    NotRequired,
    /// Credentials present.
    Authenticated,
    /// No usable credentials.
    NotAuthenticated,
    /// Credentials expired.
    Expired,
}

/// Channel auth status: the same cases as the provider's.
pub type ChannelAuthStatus = ProviderAuthStatus;

impl ProviderAuthStatus {
    /// tark's mapping of the legacy code (0..3; unknown codes: not authenticated).
    pub fn from_legacy_code(code: i32) -> Self {
        match code {
            0 => ProviderAuthStatus::NotRequired,
            1 => ProviderAuthStatus::Authenticated,
            3 => ProviderAuthStatus::Expired,
            _ => ProviderAuthStatus::NotAuthenticated,
        }
    }
}

/// `device-code` of the auth device flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCode {
    /// Code the plugin polls with.
    pub device_code: String,
    /// Code the user types.
    pub user_code: String,
    /// Where the user types it.
    pub verification_url: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Poll interval in seconds.
    pub interval: u64,
}

/// `poll-result` of the auth device flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollResult {
    /// The user has not finished yet.
    Pending,
    /// Done, with the token.
    Success(String),
    /// The device code expired.
    Expired,
    /// The flow failed.
    Error(String),
}

/// `provider-info`. `provider` is the legacy ABI's models.dev key (absent in the WIT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// Provider id.
    pub id: String,
    /// Name shown to users.
    pub display_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Whether the provider needs credentials.
    #[serde(default)]
    pub requires_auth: bool,
    /// models.dev provider key (legacy ABI only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// `model-info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model id.
    pub id: String,
    /// Name shown to users.
    #[serde(default)]
    pub display_name: String,
    /// Context window in tokens.
    #[serde(default)]
    pub context_window: u32,
    /// Streaming support.
    #[serde(default)]
    pub supports_streaming: bool,
    /// Tool-call support.
    #[serde(default)]
    pub supports_tools: bool,
}

/// `role` of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// System prompt.
    System,
    /// User turn.
    User,
    /// Assistant turn.
    Assistant,
    /// Tool output.
    Tool,
}

/// `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// Text.
    pub content: String,
}

/// `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Completion tokens.
    pub output_tokens: u32,
}

/// `chat-response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The answer.
    pub text: String,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Why generation stopped.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// `stream-chunk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// Text of this chunk.
    pub text: String,
    /// Last chunk?
    pub done: bool,
    /// Token counts (usually on the last chunk).
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// `AuthCredentials` of the legacy `provider_auth_credentials` export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCredentials {
    /// Bearer token.
    pub access_token: String,
    /// Google Cloud project (cloud_code_assist mode).
    #[serde(default)]
    pub project_id: Option<String>,
    /// `cloud_code_assist`, `openai_compat` or `standard`.
    #[serde(default = "default_api_mode")]
    pub api_mode: String,
    /// API endpoint (openai_compat mode).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub custom_headers: Option<BTreeMap<String, String>>,
}

fn default_api_mode() -> String {
    "cloud_code_assist".to_string()
}

/// `channel-info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Channel id.
    pub id: String,
    /// Name shown to users.
    pub display_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Streaming replies.
    #[serde(default)]
    pub supports_streaming: bool,
    /// Message edits.
    #[serde(default)]
    pub supports_edits: bool,
}

/// `inbound-message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Conversation.
    pub conversation_id: String,
    /// Sender.
    pub user_id: String,
    /// Text.
    pub text: String,
    /// Free-form JSON text.
    #[serde(default)]
    pub metadata_json: String,
}

/// `webhook-request` (field order is tark's `ChannelWebhookRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Query string.
    #[serde(default)]
    pub query: Option<String>,
    /// Header pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Body text.
    #[serde(default)]
    pub body: String,
}

/// `webhook-response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookResponse {
    /// HTTP status.
    pub status: u16,
    /// Header pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Messages to process.
    #[serde(default)]
    pub messages: Vec<InboundMessage>,
}

/// `outbound-message` (field order is tark's `ChannelSendRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// Conversation.
    pub conversation_id: String,
    /// Text.
    pub text: String,
    /// Message to edit, if any.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Last part of a streamed reply?
    #[serde(default)]
    pub is_final: bool,
    /// Free-form JSON text.
    #[serde(default)]
    pub metadata_json: String,
}

/// `send-result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResult {
    /// Delivered?
    pub success: bool,
    /// Id of the sent message.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Why not.
    #[serde(default)]
    pub error: Option<String>,
}

/// `tool-def`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolDef {
    /// Tool name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments, as text.
    pub parameters_schema: String,
}

/// `tool-result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    /// Did it work?
    pub success: bool,
    /// Output text.
    pub output: String,
    /// Error text.
    #[serde(default)]
    pub error: Option<String>,
}

/// `risk-level` of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RiskLevel {
    /// Reads only.
    ReadOnly,
    /// Writes.
    Write,
    /// Risky.
    Risky,
    /// Dangerous.
    Dangerous,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mapping_matches_the_cli_contract() {
        assert_eq!(
            serde_json::to_string(&AuthStatus::NotAuthenticated)
                .ok()
                .as_deref(),
            Some("\"not-authenticated\"")
        );
        assert_eq!(
            serde_json::to_string(&PollResult::Success("t".into()))
                .ok()
                .as_deref(),
            Some(r#"{"success":"t"}"#)
        );
        let info: ProviderInfo =
            serde_json::from_str(r#"{"id":"a","display_name":"A"}"#).expect("defaults apply");
        assert_eq!(info.description, "");
        assert!(!info.requires_auth);
        assert_eq!(
            serde_json::to_string(&info).ok().as_deref(),
            Some(r#"{"id":"a","display_name":"A","description":"","requires_auth":false}"#)
        );
        let out = OutboundMessage {
            conversation_id: "c".into(),
            text: "t".into(),
            message_id: None,
            is_final: true,
            metadata_json: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&out).ok().as_deref(),
            Some(
                r#"{"conversation_id":"c","text":"t","message_id":null,"is_final":true,"metadata_json":""}"#
            )
        );
        assert_eq!(
            ProviderAuthStatus::from_legacy_code(9),
            ProviderAuthStatus::NotAuthenticated
        );
        assert_eq!(AuthStatus::from_legacy_code(2), AuthStatus::Expired);
    }
}

/// `hook-event-kind`: lifecycle points a hook can attach to (our `hook-plugin` design).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookEventKind {
    /// A session starts.
    SessionStart,
    /// A session ends.
    SessionEnd,
    /// A user message is about to be sent to the model.
    UserMessage,
    /// The model answered.
    AssistantMessage,
    /// A tool is about to run.
    BeforeToolCall,
    /// A tool finished.
    AfterToolCall,
}

/// `hook-event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEvent {
    /// Which lifecycle point.
    pub kind: HookEventKind,
    /// The session.
    pub session_id: String,
    /// Event data as JSON text.
    pub payload_json: String,
}

/// `hook-decision`: what tark should do with the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookDecision {
    /// Continue unchanged.
    Allow,
    /// Continue with this payload instead.
    Rewrite(String),
    /// Stop the event, with a reason.
    Block(String),
}
