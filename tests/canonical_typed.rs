//! The typed canonical path (`abi::canonical::typed`): Rust values lowered straight into
//! the guest and lifted straight back, without `Val` or JSON. Every example canonical
//! plugin (`tests/plugins/conformance`, `tool-kit`, `openai-provider`, `chat-channel`,
//! `hook-guard`, `sdk-auth`) is called through it and compared with the dynamic path
//! (`CanonicalInstance::call` and the `PluginInstance` methods built on it); Rust types
//! that do not match the WIT are refused once, with a clear error; and the hostile guests
//! of `tests/canonical_hostile.rs` fail the typed call with exactly the dynamic call's
//! error. Runs on both compilers.

mod common;

use std::sync::Arc;

use serde_json::json;

use common::fixtures::{compilers, TestEnv};
use common::servers::HttpTestServer;
use common::wat::*;
use tark_wasmer::engine::{Compiler, EngineSettings, WasmEngine};
use tark_wasmer::lowlevel::AbiError;
use tark_wasmer::lowlevel::CanonicalInstance;
use tark_wasmer::lowlevel::Val;
use tark_wasmer::lowlevel::{Lift, Lower};
use tark_wasmer::plugin::{
    AuthStatus, ChannelAuthStatus, ChannelInfo, ChatResponse, DeviceCode, HookDecision, HookEvent,
    HookEventKind, InboundMessage, Message, ModelInfo, PollResult, ProviderAuthStatus,
    ProviderInfo, RiskLevel, Role, StreamChunk, ToolDef, ToolResult, WebhookRequest,
    WebhookResponse,
};
use tark_wasmer::{canonical_enum, canonical_record, canonical_variant};
use tark_wasmer::{
    lowlevel::{HostServices, PluginContext},
    HostConfig,
};
use tark_wasmer::{CallError, GuestMemoryError};
use tark_wasmer::{Limits, PluginCapabilities, PluginHost};

const PAGE: u64 = 65536;

// ----- instances -----

/// A canonical instance of installed plugin `id`, sharing `host`'s services (so its
/// storage is the `PluginInstance`'s).
fn typed_instance(env: &TestEnv, host: &PluginHost, id: &str) -> CanonicalInstance {
    let installed = host.registry().get(id).expect("installed").clone();
    let limits = env.config.limits.clone();
    let engine = WasmEngine::shared_with(host.compiler(), EngineSettings::from_limits(&limits))
        .expect("engine");
    let wasm = std::fs::read(installed.checked_wasm_path().expect("wasm path")).expect("wasm");
    let compiled = engine.compile(id, &wasm).expect("compile");
    let ctx = PluginContext::new(
        host.services().clone(),
        id,
        &installed.manifest.capabilities,
        &installed.data_dir(),
        limits,
    )
    .expect("context");
    CanonicalInstance::new(engine.new_store(), &compiled.module, ctx).expect("instance")
}

/// A host with one example plugin loaded, and a typed instance of it.
fn example(
    compiler: Compiler,
    name: &str,
    tweak: impl FnOnce(&mut TestEnv),
) -> (TestEnv, PluginHost, CanonicalInstance) {
    let mut env = TestEnv::new();
    tweak(&mut env);
    env.install_example(name);
    let host = env.host(compiler);
    let inst = typed_instance(&env, &host, name);
    (env, host, inst)
}

/// A WAT guest instantiated directly (storage declared, `limits` applied).
struct WatGuest {
    _tmp: tempfile::TempDir,
    module: wasmer::Module,
    engine: Arc<WasmEngine>,
    ctx: Arc<PluginContext>,
}

impl WatGuest {
    fn new(compiler: Compiler, wat: &str, limits: Limits) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let engine = WasmEngine::shared_with(compiler, EngineSettings::from_limits(&limits))
            .expect("engine");
        let wasm = wat::parse_str(wat).expect("valid WAT");
        let module = engine.compile("bad", &wasm).expect("compile").module;
        let config = HostConfig {
            limits: limits.clone(),
            ..Default::default()
        };
        let services = HostServices::new(config).expect("services");
        let caps = PluginCapabilities {
            storage: true,
            ..Default::default()
        };
        let ctx = PluginContext::new(services, "bad", &caps, tmp.path(), limits).expect("context");
        WatGuest {
            _tmp: tmp,
            module,
            engine,
            ctx,
        }
    }

    fn instance(&self) -> CanonicalInstance {
        CanonicalInstance::new(self.engine.new_store(), &self.module, self.ctx.clone())
            .expect("instance")
    }
}

// ----- the conformance world's types -----

#[derive(Debug, Clone, PartialEq)]
struct Scalars {
    flag: bool,
    a_u8: u8,
    a_s8: i8,
    a_u16: u16,
    a_s16: i16,
    a_u32: u32,
    a_s32: i32,
    a_u64: u64,
    a_s64: i64,
    a_char: char,
}
canonical_record!(Scalars {
    flag: bool,
    a_u8: u8,
    a_s8: i8,
    a_u16: u16,
    a_s16: i16,
    a_u32: u32,
    a_s32: i32,
    a_u64: u64,
    a_s64: i64,
    a_char: char,
});

#[derive(Debug, Clone, Copy, PartialEq)]
enum Color {
    Red,
    Green,
    Blue,
}
canonical_enum!(Color {
    Red = "red",
    Green = "green",
    Blue = "blue",
});

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Empty,
    Small(u8),
    Big(u64),
    Text(String),
    Pair((u32, String)),
}
canonical_variant!(Shape {
    Empty = "empty",
    Small(u8) = "small",
    Big(u64) = "big",
    Text(String) = "text",
    Pair((u32, String)) = "pair",
});

#[derive(Debug, Clone, PartialEq)]
struct Item {
    name: String,
    tags: Vec<String>,
    score: Option<i64>,
    color: Color,
}
canonical_record!(Item {
    name: String,
    tags: Vec<String>,
    score: Option<i64>,
    color: Color,
});

/// `scalars` with its fields in the wrong order.
#[derive(Debug, Clone, PartialEq)]
struct SwappedScalars {
    a_u8: u8,
    flag: bool,
}
canonical_record!(SwappedScalars {
    a_u8: u8,
    flag: bool,
});

fn scalars(flag: bool, n: i64) -> Scalars {
    Scalars {
        flag,
        a_u8: u8::MAX,
        a_s8: i8::MIN,
        a_u16: u16::MAX,
        a_s16: i16::MIN,
        a_u32: u32::MAX,
        a_s32: i32::MIN,
        a_u64: u64::MAX,
        a_s64: n,
        a_char: '😀',
    }
}

fn scalars_val(s: &Scalars) -> Val {
    Val::Record(vec![
        Val::Bool(s.flag),
        Val::U8(s.a_u8),
        Val::S8(s.a_s8),
        Val::U16(s.a_u16),
        Val::S16(s.a_s16),
        Val::U32(s.a_u32),
        Val::S32(s.a_s32),
        Val::U64(s.a_u64),
        Val::S64(s.a_s64),
        Val::Char(s.a_char),
    ])
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape::Empty,
        Shape::Small(200),
        Shape::Big(u64::MAX),
        Shape::Text("héllo wörld ✓".into()),
        Shape::Pair((7, String::new())),
    ]
}

fn shape_val(s: &Shape) -> Val {
    let case = |i, v: Option<Val>| Val::Variant(i, v.map(Box::new));
    match s {
        Shape::Empty => case(0, None),
        Shape::Small(x) => case(1, Some(Val::U8(*x))),
        Shape::Big(x) => case(2, Some(Val::U64(*x))),
        Shape::Text(t) => case(3, Some(Val::string(t.clone()))),
        Shape::Pair((n, t)) => case(
            4,
            Some(Val::Tuple(vec![Val::U32(*n), Val::string(t.clone())])),
        ),
    }
}

fn options() -> Vec<Option<Option<String>>> {
    vec![
        None,
        Some(None),
        Some(Some(String::new())),
        Some(Some("日本語".into())),
    ]
}

fn option_val(o: &Option<Option<String>>) -> Val {
    match o {
        None => Val::Option(None),
        Some(None) => Val::some(Val::Option(None)),
        Some(Some(s)) => Val::some(Val::some(Val::string(s.clone()))),
    }
}

type Nested = Result<Result<String, u32>, String>;

fn results() -> Vec<Nested> {
    vec![
        Ok(Ok("fine".into())),
        Ok(Err(u32::MAX)),
        Err("outer error".into()),
        Err(String::new()),
    ]
}

fn result_val(r: &Nested) -> Val {
    match r {
        Ok(Ok(s)) => Val::ok(Some(Val::ok(Some(Val::string(s.clone()))))),
        Ok(Err(n)) => Val::ok(Some(Val::err(Some(Val::U32(*n))))),
        Err(e) => Val::err(Some(Val::string(e.clone()))),
    }
}

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            name: format!("item-{i}-ü"),
            tags: (0..(i % 3)).map(|t| format!("t{t}")).collect(),
            score: (i % 2 == 0).then(|| -(i as i64) - 1),
            color: [Color::Red, Color::Green, Color::Blue][i % 3],
        })
        .collect()
}

fn item_val(i: &Item) -> Val {
    Val::Record(vec![
        Val::string(i.name.clone()),
        Val::List(i.tags.iter().map(|t| Val::string(t.clone())).collect()),
        match i.score {
            Some(s) => Val::some(Val::S64(s)),
            None => Val::Option(None),
        },
        Val::Enum(i.color as u32),
    ])
}

/// Call `conformance#func` typed and dynamically; both must give back `expected`.
fn both<P: Lower, R: Lift + PartialEq + std::fmt::Debug>(
    inst: &mut CanonicalInstance,
    func: &str,
    params: P,
    args: &[Val],
    expected: &R,
    expected_val: &Val,
) {
    let typed: R = inst
        .call_func("conformance", func, params)
        .unwrap_or_else(|e| panic!("typed {func}: {e}"));
    assert_eq!(&typed, expected, "typed {func}");
    let dynamic = inst
        .call("conformance", func, args)
        .unwrap_or_else(|e| panic!("dynamic {func}: {e}"));
    assert_eq!(dynamic.as_ref(), Some(expected_val), "dynamic {func}");
}

#[test]
fn conformance_round_trips_every_type_like_the_dynamic_path() {
    for c in compilers() {
        let (_env, _host, mut inst) = example(c, "conformance", |_| {});
        let big = "x".repeat(1 << 20);
        for s in ["", "a", "non-ASCII: ünïcødé ✓ 😀 日本語", big.as_str()] {
            for func in ["echo-string", "relay-string"] {
                both(
                    &mut inst,
                    func,
                    (s,),
                    &[Val::string(s)],
                    &s.to_string(),
                    &Val::string(s),
                );
            }
        }
        for b in [vec![], vec![0u8, 255, 1], vec![7u8; 1 << 20]] {
            both(
                &mut inst,
                "echo-bytes",
                (b.as_slice(),),
                &[Val::Bytes(b.clone())],
                &b,
                &Val::Bytes(b.clone()),
            );
        }
        let u32s: Vec<u32> = vec![0, 1, u32::MAX, 12345];
        let u32s_val = Val::List(u32s.iter().map(|x| Val::U32(*x)).collect());
        both(
            &mut inst,
            "echo-u32s",
            (&u32s,),
            std::slice::from_ref(&u32s_val),
            &u32s,
            &u32s_val,
        );
        let many: Vec<u32> = (0..100_000).collect();
        let sum: u64 = inst
            .call_func("conformance", "sum-u32s", (many.as_slice(),))
            .expect("sum-u32s");
        assert_eq!(sum, many.iter().map(|x| u64::from(*x)).sum::<u64>(), "{c}");
        let made: String = inst
            .call_func("conformance", "make-string", ('é', 1000u32))
            .expect("make-string");
        assert_eq!(made, "é".repeat(1000), "{c}");
        for l in [vec![], vec!["", "b", "ü"]] {
            let owned: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            let val = Val::List(l.iter().map(|s| Val::string(*s)).collect());
            for func in ["echo-strings", "relay-strings"] {
                both(
                    &mut inst,
                    func,
                    (l.as_slice(),),
                    std::slice::from_ref(&val),
                    &owned,
                    &val,
                );
            }
        }
        for s in [scalars(true, i64::MIN), scalars(false, -1)] {
            for func in ["echo-scalars", "relay-scalars"] {
                let v = scalars_val(&s);
                both(&mut inst, func, (&s,), std::slice::from_ref(&v), &s, &v);
            }
        }
        let t = ("tuple ✓".to_string(), u64::MAX, i8::MIN, true);
        let tv = Val::Tuple(vec![
            Val::string("tuple ✓"),
            Val::U64(u64::MAX),
            Val::S8(i8::MIN),
            Val::Bool(true),
        ]);
        both(
            &mut inst,
            "echo-tuple",
            (&t,),
            std::slice::from_ref(&tv),
            &t,
            &tv,
        );
        for color in [Color::Red, Color::Green, Color::Blue] {
            let v = Val::Enum(color as u32);
            both(
                &mut inst,
                "echo-color",
                (color,),
                std::slice::from_ref(&v),
                &color,
                &v,
            );
        }
        for s in shapes() {
            for func in ["echo-shape", "relay-shape"] {
                let v = shape_val(&s);
                both(&mut inst, func, (&s,), std::slice::from_ref(&v), &s, &v);
            }
        }
        for o in options() {
            for func in ["echo-option", "relay-option"] {
                let v = option_val(&o);
                both(&mut inst, func, (&o,), std::slice::from_ref(&v), &o, &v);
            }
        }
        for r in results() {
            for func in ["echo-result", "relay-result"] {
                let v = result_val(&r);
                both(&mut inst, func, (&r,), std::slice::from_ref(&v), &r, &v);
            }
        }
        for n in [0, 1, 200] {
            let list = items(n);
            let v = Val::List(list.iter().map(item_val).collect());
            for func in ["echo-items", "relay-items"] {
                both(
                    &mut inst,
                    func,
                    (list.as_slice(),),
                    std::slice::from_ref(&v),
                    &list,
                    &v,
                );
            }
        }
        // 18 flat parameters: spilled to guest memory on both paths.
        let bytes = [1u8, 2, 3];
        let typed: String = inst
            .call_func(
                "conformance",
                "many-params",
                (
                    u8::MAX,
                    u16::MAX,
                    u32::MAX,
                    u64::MAX,
                    i8::MIN,
                    i16::MIN,
                    i32::MIN,
                    i64::MIN,
                    true,
                    'ß',
                    "kay",
                    &bytes[..],
                    7u32,
                    8u32,
                    "oh",
                ),
            )
            .expect("many-params");
        let dynamic = inst
            .call(
                "conformance",
                "many-params",
                &[
                    Val::U8(u8::MAX),
                    Val::U16(u16::MAX),
                    Val::U32(u32::MAX),
                    Val::U64(u64::MAX),
                    Val::S8(i8::MIN),
                    Val::S16(i16::MIN),
                    Val::S32(i32::MIN),
                    Val::S64(i64::MIN),
                    Val::Bool(true),
                    Val::Char('ß'),
                    Val::string("kay"),
                    Val::Bytes(bytes.to_vec()),
                    Val::U32(7),
                    Val::U32(8),
                    Val::string("oh"),
                ],
            )
            .expect("dynamic many-params");
        assert_eq!(dynamic, Some(Val::String(typed.clone())), "{c}");
        assert!(
            typed.contains("kay") && typed.contains("oh"),
            "{c}: {typed}"
        );
        // An explicit handle works the same and can be reused.
        let echo = inst
            .typed_func::<(&str,), String>("conformance", "echo-string")
            .expect("typed_func");
        for s in ["one", "two"] {
            assert_eq!(inst.call_typed(&echo, (s,)).expect("call_typed"), s);
        }
    }
}

// ----- type-check failures -----

fn type_mismatch(e: CallError) -> (String, String) {
    match e {
        CallError::TypeMismatch { function, message } => (function, message),
        other => panic!("expected a type mismatch, got {other:?}"),
    }
}

#[test]
fn rust_types_that_do_not_match_the_wit_are_refused_once_with_a_clear_error() {
    let c = Compiler::default();
    let (_env, _host, mut inst) = example(c, "conformance", |_| {});
    let (function, message) = type_mismatch(
        inst.typed_func::<(u32,), String>("conformance", "echo-string")
            .expect_err("u32 for string"),
    );
    assert_eq!(function, "tark:plugin/conformance#echo-string");
    assert_eq!(
        message,
        "parameters (s: string): item 0: Rust type `u32` does not match WIT type `string`"
    );
    let e = inst
        .call_func::<(&str,), u64>("conformance", "echo-string", ("x",))
        .expect_err("u64 for string");
    assert_eq!(
        e.to_string(),
        "tark:plugin/conformance#echo-string: Rust types do not match the WIT contract: \
         result: Rust type `u64` does not match WIT type `string`"
    );
    let (_, message) = type_mismatch(
        inst.typed_func::<(&str, &str), String>("conformance", "echo-string")
            .expect_err("two params"),
    );
    assert!(
        message.contains("does not match WIT type `tuple<string>`"),
        "{message}"
    );
    let (_, message) = type_mismatch(
        inst.typed_func::<(SwappedScalars,), Scalars>("conformance", "echo-scalars")
            .expect_err("record"),
    );
    assert!(
        message.contains("Rust record `") && message.contains("has 2 fields (a_u8, flag)"),
        "{message}"
    );
    let (_, message) = type_mismatch(
        inst.typed_func::<(Vec<u8>,), Vec<u8>>("conformance", "echo-u32s")
            .expect_err("list element"),
    );
    assert_eq!(
        message,
        "parameters (l: list<u32>): item 0: list element: Rust type `u8` does not match WIT type `u32`"
    );
    let (_, message) = type_mismatch(
        inst.typed_func::<(Option<String>,), Option<Option<String>>>("conformance", "echo-option")
            .expect_err("nested option"),
    );
    assert!(message.contains("option payload"), "{message}");
    let (_, message) = type_mismatch(
        inst.typed_func::<(Nested,), Result<String, String>>("conformance", "echo-result")
            .expect_err("result"),
    );
    assert!(message.starts_with("result: result ok: "), "{message}");
    // Functions that are not in the contract, or not exported.
    assert_eq!(
        inst.typed_func::<(), ()>("conformance", "no-such-function")
            .expect_err("unknown"),
        CallError::MissingExport("tark:plugin/conformance#no-such-function".into())
    );
    assert_eq!(
        inst.typed_func::<(), String>("hook-plugin", "name")
            .expect_err("not exported"),
        CallError::MissingExport("tark:plugin/hook-plugin#name".into())
    );
    // A refused type leaves the instance usable, and the right type is checked once.
    let s: String = inst
        .call_func("conformance", "echo-string", ("still fine",))
        .expect("echo");
    assert_eq!(s, "still fine");
}

// ----- the example plugins, typed and dynamic -----

#[test]
fn tool_kit_typed_matches_dynamic() {
    for c in compilers() {
        let (_env, mut host, mut inst) = example(c, "tool-kit", |_| {});
        let p = host.get_mut("tool-kit").expect("loaded");
        let tools: Vec<ToolDef> = inst
            .call_func("tool-plugin", "get-tools", ())
            .expect("get-tools");
        assert_eq!(tools, p.tool_get_tools().expect("dynamic get-tools"), "{c}");
        assert_eq!(tools.len(), 5, "{c}");
        for name in tools
            .iter()
            .map(|t| t.name.as_str())
            .chain(["rm_rf", "", "word_count "])
        {
            let risk: RiskLevel = inst
                .call_func("tool-plugin", "get-risk-level", (name,))
                .expect("get-risk-level");
            assert_eq!(risk, p.tool_get_risk_level(name).expect("dynamic"), "{c}");
        }
        for (tool, args) in [
            ("word_count", json!({"text": "one two  three"}).to_string()),
            ("json_pretty", json!({"json": "{\"a\":[1,2]}"}).to_string()),
            ("json_pretty", json!({"json": "not json"}).to_string()),
            ("delete_everything", "{}".to_string()),
            ("no_such_tool", "{}".to_string()),
        ] {
            let typed: ToolResult = inst
                .call_func("tool-plugin", "execute", (tool, args.as_str()))
                .expect("execute");
            assert_eq!(typed, p.tool_execute(tool, &args).expect("dynamic"), "{c}");
        }
    }
}

fn msgs() -> Vec<Message> {
    vec![
        Message {
            role: Role::System,
            content: "be brief".into(),
        },
        Message {
            role: Role::User,
            content: "hello there".into(),
        },
    ]
}

#[test]
fn openai_provider_typed_matches_dynamic() {
    for c in compilers() {
        let server = HttpTestServer::start();
        let (_env, mut host, mut inst) = example(c, "openai-provider", |_| {});
        let p = host.get_mut("openai-provider").expect("loaded");
        const IFACE: &str = "provider-plugin";
        let info: ProviderInfo = inst.call_func(IFACE, "info", ()).expect("info");
        assert_eq!(info, p.provider_info().expect("dynamic info"), "{c}");
        assert_eq!(info.provider, None);
        let status: ProviderAuthStatus = inst.call_func(IFACE, "auth-status", ()).expect("st");
        assert_eq!(status, ProviderAuthStatus::NotAuthenticated, "{c}");
        let models: Vec<ModelInfo> = inst.call_func(IFACE, "models", ()).expect("models");
        assert_eq!(models, vec![], "{c}");
        let chat: Result<ChatResponse, String> = inst
            .call_func(IFACE, "chat", (msgs().as_slice(), "m"))
            .expect("chat");
        assert_eq!(chat, Err("not authenticated".to_string()), "{c}");
        let bad: Result<(), String> = inst
            .call_func(IFACE, "auth-init", ("not json",))
            .expect("auth-init");
        assert!(
            matches!(&bad, Err(m) if m.starts_with("invalid credentials: ")),
            "{c}: {bad:?}"
        );

        let creds = json!({"api_key": "sk-typed", "base_url": server.base_url()}).to_string();
        let ok: Result<(), String> = inst
            .call_func(IFACE, "auth-init", (creds.as_str(),))
            .expect("auth-init");
        assert_eq!(ok, Ok(()), "{c}");
        p.provider_auth_init(&creds).expect("dynamic auth-init");
        let status: ProviderAuthStatus = inst.call_func(IFACE, "auth-status", ()).expect("st");
        assert_eq!(status, p.provider_auth_status().expect("dynamic"), "{c}");
        assert_eq!(status, ProviderAuthStatus::Authenticated, "{c}");
        let models: Vec<ModelInfo> = inst.call_func(IFACE, "models", ()).expect("models");
        assert_eq!(models, p.provider_models().expect("dynamic models"), "{c}");
        assert_eq!(models.len(), 2, "{c}");

        let messages = msgs();
        let chat: Result<ChatResponse, String> = inst
            .call_func(IFACE, "chat", (messages.as_slice(), "test-model"))
            .expect("chat");
        let chat = chat.expect("chat ok");
        assert_eq!(
            chat,
            p.provider_chat(&messages, "test-model").expect("dynamic"),
            "{c}"
        );
        assert_eq!(chat.text, "echo: hello there", "{c}");
        let reqs = server.requests_to("/v1/chat/completions");
        assert_eq!(reqs.len(), 2, "{c}");
        assert_eq!(reqs[0].json(), reqs[1].json(), "{c}: the same request body");

        // Streaming through the typed path: start, then poll until done.
        let start: Result<u64, String> = inst
            .call_func(IFACE, "chat-stream-start", (messages.as_slice(), "m"))
            .expect("start");
        let id = start.expect("stream id");
        let mut text = String::new();
        let mut done = false;
        for _ in 0..100 {
            let chunk: Result<StreamChunk, String> = inst
                .call_func(IFACE, "chat-stream-poll", (id,))
                .expect("poll");
            let chunk = chunk.expect("chunk");
            text.push_str(&chunk.text);
            if chunk.done {
                assert_eq!(chunk.usage, chat.usage, "{c}");
                done = true;
                break;
            }
        }
        assert!(done, "{c}: the stream never finished");
        assert_eq!(text, chat.text, "{c}");
        let unknown: Result<StreamChunk, String> = inst
            .call_func(IFACE, "chat-stream-poll", (u64::MAX,))
            .expect("poll");
        assert_eq!(
            unknown,
            Err("unknown stream 18446744073709551615".into()),
            "{c}"
        );
        let out: Result<(), String> = inst.call_func(IFACE, "auth-logout", ()).expect("out");
        assert_eq!(out, Ok(()), "{c}");
    }
}

#[test]
fn chat_channel_typed_matches_dynamic() {
    for c in compilers() {
        let (_env, mut host, mut inst) = example(c, "chat-channel", |_| {});
        let p = host.get_mut("chat-channel").expect("loaded");
        const IFACE: &str = "channel-plugin";
        let info: ChannelInfo = inst.call_func(IFACE, "info", ()).expect("info");
        assert_eq!(info, p.channel_info().expect("dynamic info"), "{c}");
        let status: ChannelAuthStatus = inst.call_func(IFACE, "auth-status", ()).expect("st");
        assert_eq!(status, p.channel_auth_status().expect("dynamic"), "{c}");
        let mut req = WebhookRequest {
            method: "POST".into(),
            path: "/channels/chat-channel/webhook".into(),
            query: Some("a=1&b=2".into()),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-signature".into(), "sig".into()),
            ],
            body: json!({"conversation_id": "c-7", "user_id": "u-7", "text": "via webhook"})
                .to_string(),
        };
        for _ in 0..2 {
            let typed: Result<WebhookResponse, String> = inst
                .call_func(IFACE, "handle-webhook", (&req,))
                .expect("handle-webhook");
            let typed = typed.expect("webhook ok");
            assert_eq!(
                typed,
                p.channel_handle_webhook(&req).expect("dynamic"),
                "{c}"
            );
            req.body = "{\"unexpected\": true}".into();
            req.query = None;
        }
        let create = json!({
            "t": "MESSAGE_CREATE",
            "d": {"channel_id": "chan-1", "author_id": "author-1", "content": "gateway hi"}
        })
        .to_string();
        let typed: Result<Vec<InboundMessage>, String> = inst
            .call_func(IFACE, "handle-gateway-event", (create.as_str(),))
            .expect("gateway");
        assert_eq!(
            typed,
            Ok(p.channel_handle_gateway_event(&create).expect("dynamic")),
            "{c}"
        );
        let bad: Result<Vec<InboundMessage>, String> = inst
            .call_func(IFACE, "handle-gateway-event", ("not json",))
            .expect("gateway");
        assert_eq!(bad, Err("invalid gateway event JSON".into()), "{c}");
    }
}

#[test]
fn hook_guard_typed_matches_dynamic() {
    for c in compilers() {
        let (_env, mut host, mut inst) = example(c, "hook-guard", |_| {});
        let p = host.get_mut("hook-guard").expect("loaded");
        let name: String = inst.call_func("hook-plugin", "name", ()).expect("name");
        assert_eq!(name, p.hook_name().expect("dynamic name"), "{c}");
        let subs: Vec<HookEventKind> = inst
            .call_func("hook-plugin", "subscriptions", ())
            .expect("subscriptions");
        assert_eq!(subs, p.hook_subscriptions().expect("dynamic"), "{c}");
        for (kind, payload) in [
            (
                HookEventKind::UserMessage,
                json!({"role": "user", "content": "this is forbidden"}),
            ),
            (
                HookEventKind::UserMessage,
                json!({"role": "user", "content": "my secret-token"}),
            ),
            (
                HookEventKind::UserMessage,
                json!({"role": "user", "content": "hello"}),
            ),
            (
                HookEventKind::BeforeToolCall,
                json!({"tool": "shell", "arguments": "{}"}),
            ),
            (
                HookEventKind::SessionStart,
                json!({"session_id": "s", "workspace": "/w"}),
            ),
        ] {
            let event = HookEvent {
                kind,
                session_id: "sess-typed".into(),
                payload_json: payload.to_string(),
            };
            let typed: HookDecision = inst
                .call_func("hook-plugin", "on-event", (&event,))
                .expect("on-event");
            assert_eq!(typed, p.hook_on_event(&event).expect("dynamic"), "{c}");
        }
    }
}

#[test]
fn sdk_auth_typed_matches_dynamic() {
    for c in compilers() {
        let server = HttpTestServer::start();
        let (_env, mut host, mut inst) = example(c, "sdk-auth", |_| {});
        let p = host.get_mut("sdk-auth").expect("loaded");
        p.context()
            .storage_set("auth_base", &server.base_url())
            .expect("auth_base");
        const IFACE: &str = "auth-plugin";
        let name: String = inst.call_func(IFACE, "display-name", ()).expect("name");
        assert_eq!(name, p.auth_display_name().expect("dynamic"), "{c}");
        let status: AuthStatus = inst.call_func(IFACE, "status", ()).expect("status");
        assert_eq!(status, p.auth_status().expect("dynamic"), "{c}");
        let token: Result<String, String> =
            inst.call_func(IFACE, "get-token", ()).expect("get-token");
        assert_eq!(token, Err("Not authenticated".into()), "{c}");
        let flow: Result<DeviceCode, String> = inst
            .call_func(IFACE, "start-device-flow", ())
            .expect("start-device-flow");
        assert_eq!(
            flow,
            Ok(p.auth_start_device_flow().expect("dynamic")),
            "{c}"
        );
        let poll: PollResult = inst
            .call_func(IFACE, "poll", ("no-such-code",))
            .expect("poll");
        assert_eq!(poll, p.auth_poll("no-such-code").expect("dynamic"), "{c}");
        let out: Result<(), String> = inst.call_func(IFACE, "logout", ()).expect("logout");
        assert_eq!(out, Ok(()), "{c}");
    }
}

// ----- hostile guests: the typed call fails exactly like the dynamic one -----

/// Data: "Hostile" @32, invalid UTF-8 @48.
fn module(pages: u32, body: &[&str]) -> String {
    format!(
        "(module (memory (export \"memory\") {pages})\n  (data (i32.const 32) \"Hostile\")\n  (data (i32.const 48) \"\\ff\\fe\")\n{}\n)",
        body.join("\n")
    )
}

/// Call `iface#func` typed on one fresh instance and dynamically on another; both must
/// fail with the same error, which is returned.
fn same_failure<P: Lower, R: Lift + std::fmt::Debug>(
    guest: &WatGuest,
    iface: &str,
    func: &str,
    params: P,
    args: &[Val],
) -> CallError {
    let typed = guest
        .instance()
        .call_func::<P, R>(iface, func, params)
        .expect_err("typed call must fail");
    let dynamic = guest
        .instance()
        .call(iface, func, args)
        .expect_err("dynamic call must fail");
    assert_eq!(typed, dynamic, "{iface}#{func}");
    typed
}

const DISPLAY: &str = "tark:plugin/auth-plugin#display-name";

#[test]
fn hostile_result_pointers_strings_and_discriminants_fail_like_the_dynamic_path() {
    for c in compilers() {
        // display-name -> string through a return pointer.
        let cases: Vec<(i32, String, GuestMemoryError)> = vec![
            (
                66,
                String::new(),
                GuestMemoryError::Misaligned { ptr: 66, align: 4 },
            ),
            (65532, String::new(), oob(65532, 8, PAGE)),
            (-8, String::new(), oob(0xffff_fff8, 8, PAGE)),
            (
                128,
                pair(48, 2),
                GuestMemoryError::InvalidUtf8 { ptr: 48, len: 2 },
            ),
            (128, pair(0xffff_ff00, 0x200), oob(0xffff_ff00, 0x200, PAGE)),
            (128, pair(32, u32::MAX), oob(32, u64::from(u32::MAX), PAGE)),
        ];
        for (ret, data, expected) in cases {
            let wat = module(
                1,
                &[
                    &format!("(data (i32.const 128) \"{data}\")"),
                    &export("auth-plugin", "display-name", &format!("(i32.const {ret})")),
                    &post("auth-plugin", "display-name"),
                ],
            );
            let g = WatGuest::new(c, &wat, Limits::default());
            let e = same_failure::<(), String>(&g, "auth-plugin", "display-name", (), &[]);
            assert_eq!(e, abi(DISPLAY, expected), "{c}: {ret}");
            assert!(e.poisons_instance());
        }
        // Flat enum results.
        for (ret, value) in [(7, 7u32), (3, 3), (-1, u32::MAX)] {
            let wat = module(
                1,
                &[&export(
                    "auth-plugin",
                    "status",
                    &format!("(i32.const {ret})"),
                )],
            );
            let g = WatGuest::new(c, &wat, Limits::default());
            let e = same_failure::<(), AuthStatus>(&g, "auth-plugin", "status", (), &[]);
            assert_eq!(
                e,
                abi(
                    "tark:plugin/auth-plugin#status",
                    AbiError::InvalidDiscriminant { value, cases: 3 }
                ),
                "{c}"
            );
        }
        // In memory: result<string, string> = 5, poll-result = 4, an option inside a
        // record = 2.
        let wat = module(
            1,
            &[
                REALLOC_OK,
                r#"(data (i32.const 128) "\05")"#,
                r#"(data (i32.const 144) "\04")"#,
                &format!(
                    "(data (i32.const 160) \"\\01\\00\\00\\00{}\\02\")",
                    pair(32, 7)
                ),
                &export("auth-plugin", "get-token", "(i32.const 128)"),
                &post("auth-plugin", "get-token"),
                &export("auth-plugin", "poll", "(i32.const 144)"),
                &post("auth-plugin", "poll"),
                &export("tool-plugin", "execute", "(i32.const 160)"),
                &post("tool-plugin", "execute"),
            ],
        );
        let g = WatGuest::new(c, &wat, Limits::default());
        let e = same_failure::<(), Result<String, String>>(&g, "auth-plugin", "get-token", (), &[]);
        assert_eq!(
            e,
            abi(
                "tark:plugin/auth-plugin#get-token",
                AbiError::InvalidDiscriminant { value: 5, cases: 2 }
            )
        );
        let e = same_failure::<(&str,), PollResult>(
            &g,
            "auth-plugin",
            "poll",
            ("code",),
            &[Val::string("code")],
        );
        assert_eq!(
            e,
            abi(
                "tark:plugin/auth-plugin#poll",
                AbiError::InvalidDiscriminant { value: 4, cases: 4 }
            )
        );
        let e = same_failure::<(&str, &str), ToolResult>(
            &g,
            "tool-plugin",
            "execute",
            ("t", "{}"),
            &[Val::string("t"), Val::string("{}")],
        );
        assert_eq!(
            e,
            abi(
                "tark:plugin/tool-plugin#execute",
                AbiError::InvalidDiscriminant { value: 2, cases: 2 }
            )
        );
        // Nested options, results and variants of the conformance world; a bad char.
        let nested: [(&str, String, AbiError); 6] = [
            (
                "echo-option",
                "\\02".into(),
                AbiError::InvalidDiscriminant { value: 2, cases: 2 },
            ),
            (
                "echo-option",
                "\\01\\00\\00\\00\\02".into(),
                AbiError::InvalidDiscriminant { value: 2, cases: 2 },
            ),
            (
                "echo-result",
                "\\05".into(),
                AbiError::InvalidDiscriminant { value: 5, cases: 2 },
            ),
            (
                "echo-result",
                "\\00\\00\\00\\00\\09".into(),
                AbiError::InvalidDiscriminant { value: 9, cases: 2 },
            ),
            (
                "echo-shape",
                "\\05".into(),
                AbiError::InvalidDiscriminant { value: 5, cases: 5 },
            ),
            (
                "echo-scalars",
                format!("{}{}", "\\00".repeat(32), le(0xd800)),
                AbiError::InvalidChar(0xd800),
            ),
        ];
        for (func, data, expected) in nested {
            let wat = module(
                1,
                &[
                    REALLOC_OK,
                    &format!("(data (i32.const 256) \"{data}\")"),
                    &export("conformance", func, "(i32.const 256)"),
                    &post("conformance", func),
                ],
            );
            let g = WatGuest::new(c, &wat, Limits::default());
            let e = match func {
                "echo-option" => same_failure::<_, Option<Option<String>>>(
                    &g,
                    "conformance",
                    func,
                    (None::<Option<String>>,),
                    &[Val::Option(None)],
                ),
                "echo-result" => same_failure::<_, Nested>(
                    &g,
                    "conformance",
                    func,
                    (Err::<Result<String, u32>, String>(String::new()),),
                    &[Val::err(Some(Val::string("")))],
                ),
                "echo-shape" => same_failure::<_, Shape>(
                    &g,
                    "conformance",
                    func,
                    (Shape::Empty,),
                    &[Val::Variant(0, None)],
                ),
                _ => {
                    let s = scalars(false, 0);
                    same_failure::<_, Scalars>(&g, "conformance", func, (&s,), &[scalars_val(&s)])
                }
            };
            assert_eq!(
                e,
                abi(&format!("tark:plugin/conformance#{func}"), expected),
                "{c}: {func}"
            );
        }
    }
}

#[test]
fn hostile_realloc_and_missing_post_return_fail_like_the_dynamic_path() {
    const POLL: &str = "tark:plugin/auth-plugin#poll";
    let outside = |ptr: u32, size: u32| AbiError::Realloc {
        align: 1,
        size,
        ptr,
        detail: oob(u64::from(ptr), u64::from(size), PAGE).to_string(),
    };
    for c in compilers() {
        let cases: Vec<(String, &str, AbiError)> = vec![
            (
                realloc_returning(0),
                "abcd",
                AbiError::Realloc {
                    align: 1,
                    size: 4,
                    ptr: 0,
                    detail: "null pointer".into(),
                },
            ),
            (realloc_returning(-16), "abcd", outside(0xffff_fff0, 4)),
            (realloc_returning(65534), "abcd", outside(65534, 4)),
            (realloc_returning(-16), "", outside(0xffff_fff0, 0)),
            (String::new(), "abcd", AbiError::NoRealloc),
        ];
        for (realloc, arg, expected) in cases {
            let wat = module(
                1,
                &[
                    &realloc,
                    r#"(data (i32.const 128) "\00")"#,
                    &export("auth-plugin", "poll", "(i32.const 128)"),
                    &post("auth-plugin", "poll"),
                ],
            );
            let g = WatGuest::new(c, &wat, Limits::default());
            let e = same_failure::<(&str,), PollResult>(
                &g,
                "auth-plugin",
                "poll",
                (arg,),
                &[Val::string(arg)],
            );
            assert_eq!(e, abi(POLL, expected), "{c}: {realloc}");
        }
        let wat = module(
            1,
            &[
                REALLOC_TRAP,
                &export("auth-plugin", "poll", "(i32.const 128)"),
                &post("auth-plugin", "poll"),
            ],
        );
        let g = WatGuest::new(c, &wat, Limits::default());
        match same_failure::<(&str,), PollResult>(
            &g,
            "auth-plugin",
            "poll",
            ("abcd",),
            &[Val::string("abcd")],
        ) {
            CallError::Abi { function, message } => {
                assert_eq!(function, POLL);
                assert!(
                    message.starts_with("cabi_realloc trapped: "),
                    "{c}: {message}"
                );
            }
            other => panic!("{c}: {other:?}"),
        }
        // A list<string> argument's element array needs alignment 4.
        let wat = module(
            1,
            &[
                REALLOC_MISALIGNED,
                r#"(data (i32.const 256) "\00\00\00\00\00\00\00\00")"#,
                &export("conformance", "echo-strings", "(i32.const 256)"),
                &post("conformance", "echo-strings"),
            ],
        );
        let g = WatGuest::new(c, &wat, Limits::default());
        let e = same_failure::<(&[&str],), Vec<String>>(
            &g,
            "conformance",
            "echo-strings",
            (&["a"][..],),
            &[Val::List(vec![Val::string("a")])],
        );
        assert_eq!(
            e,
            abi("tark:plugin/conformance#echo-strings", realloc_misaligned()),
            "{c}"
        );
        // Missing post-return for a result that owns memory; a trapping one.
        let wat = module(
            1,
            &[
                r#"(data (i32.const 64) "\20\00\00\00\07\00\00\00")"#,
                &export("auth-plugin", "display-name", "(i32.const 64)"),
            ],
        );
        let g = WatGuest::new(c, &wat, Limits::default());
        let e = same_failure::<(), String>(&g, "auth-plugin", "display-name", (), &[]);
        assert_eq!(e, CallError::MissingPostReturn(DISPLAY.into()), "{c}");
        let wat = module(
            1,
            &[
                r#"(data (i32.const 64) "\20\00\00\00\07\00\00\00")"#,
                &export("auth-plugin", "display-name", "(i32.const 64)"),
                "(func (export \"cabi_post_tark:plugin/auth-plugin#display-name\") (param i32) unreachable)",
            ],
        );
        let g = WatGuest::new(c, &wat, Limits::default());
        let e = same_failure::<(), String>(&g, "auth-plugin", "display-name", (), &[]);
        match e {
            CallError::Trap { function, .. } => {
                assert_eq!(function, format!("cabi_post_{DISPLAY}"), "{c}")
            }
            other => panic!("{c}: {other:?}"),
        }
        // The healthy case of the same guest shape answers "Hostile".
        let wat = module(
            1,
            &[
                r#"(data (i32.const 64) "\20\00\00\00\07\00\00\00")"#,
                &export("auth-plugin", "display-name", "(i32.const 64)"),
                &post("auth-plugin", "display-name"),
            ],
        );
        let g = WatGuest::new(c, &wat, Limits::default());
        let name: String = g
            .instance()
            .call_func("auth-plugin", "display-name", ())
            .expect("display-name");
        assert_eq!(name, "Hostile", "{c}");
    }
}

#[test]
fn hostile_sizes_are_refused_and_host_values_count_against_the_limit() {
    const GET_TOOLS: &str = "tark:plugin/tool-plugin#get-tools";
    let tools = |pages: u32, ptr: u32, len: u32, extra: &str| {
        module(
            pages,
            &[
                REALLOC_OK,
                &format!("(data (i32.const 128) \"{}\")", pair(ptr, len)),
                extra,
                &export("tool-plugin", "get-tools", "(i32.const 128)"),
                &post("tool-plugin", "get-tools"),
            ],
        )
    };
    for c in compilers() {
        // Lengths past memory: computed without overflow, refused before any copy.
        for (len, bytes) in [
            (0x2000_0000u32, 24 * 0x2000_0000u64),
            (u32::MAX, 24 * u64::from(u32::MAX)),
            (2731, 24 * 2731),
        ] {
            let g = WatGuest::new(c, &tools(1, 256, len, ""), Limits::default());
            let e = same_failure::<(), Vec<ToolDef>>(&g, "tool-plugin", "get-tools", (), &[]);
            assert_eq!(e, abi(GET_TOOLS, oob(256, bytes, PAGE)), "{c}: {len}");
        }
        // One list over the per-call limit.
        let limits = Limits {
            guest_read_max: 65536,
            ..Limits::default()
        };
        let g = WatGuest::new(c, &tools(2, 0, 3000, ""), limits.clone());
        let e = same_failure::<(), Vec<ToolDef>>(&g, "tool-plugin", "get-tools", (), &[]);
        assert_eq!(
            e,
            abi(GET_TOOLS, AbiError::TooLarge { limit: 65536 }),
            "{c}"
        );
        // Many small strings over the limit together (100 defs of three 4 KiB strings).
        let def = pair(4096, 4096).repeat(3);
        let defs = format!("(data (i32.const 8192) \"{}\")", def.repeat(100));
        let g = WatGuest::new(c, &tools(1, 8192, 100, &defs), limits.clone());
        let e = same_failure::<(), Vec<ToolDef>>(&g, "tool-plugin", "get-tools", (), &[]);
        assert_eq!(
            e,
            abi(GET_TOOLS, AbiError::TooLarge { limit: 65536 }),
            "{c}"
        );
        // Five of them fit, on both paths.
        let g = WatGuest::new(c, &tools(1, 8192, 5, &defs), limits.clone());
        let typed: Vec<ToolDef> = g
            .instance()
            .call_func("tool-plugin", "get-tools", ())
            .expect("under the limit");
        assert_eq!(typed.len(), 5, "{c}");
        assert!(typed.iter().all(|d| d.name.len() == 4096));
        // The typed path counts the host size of what it builds: 2000 tool-defs of empty
        // strings are 48 KB of guest data but 144 KB of Rust values (72 bytes each).
        let g = WatGuest::new(c, &tools(2, 1024, 2000, ""), limits.clone());
        let e = g
            .instance()
            .call_func::<(), Vec<ToolDef>>("tool-plugin", "get-tools", ())
            .expect_err("host size over the limit");
        assert_eq!(
            e,
            abi(GET_TOOLS, AbiError::TooLarge { limit: 65536 }),
            "{c}"
        );
        // A list<u8> over the default limit.
        let wat = module(
            1100,
            &[
                REALLOC_OK,
                &format!("(data (i32.const 256) \"{}\")", pair(1024, 68 << 20)),
                &export("conformance", "echo-bytes", "(i32.const 256)"),
                &post("conformance", "echo-bytes"),
            ],
        );
        let g = WatGuest::new(c, &wat, Limits::default());
        let e = same_failure::<(&[u8],), Vec<u8>>(
            &g,
            "conformance",
            "echo-bytes",
            (&[][..],),
            &[Val::Bytes(vec![])],
        );
        assert_eq!(
            e,
            abi(
                "tark:plugin/conformance#echo-bytes",
                AbiError::TooLarge {
                    limit: Limits::default().guest_read_max
                }
            ),
            "{c}"
        );
    }
}
