//! The conformance plugin (wit-bindgen 0.36, `wit/conformance.wit`) round-trips every
//! WIT type the tark interfaces use through the canonical-ABI bridge, in both
//! directions: host -> guest -> host (`echo-*`) and host -> guest -> host import ->
//! guest -> host (`relay-*`), with empty and large strings and lists, non-ASCII text,
//! nested options and results, u64::MAX and negative s64, and more than 16 flat
//! parameters. Runs on both compilers.

mod common;

use common::fixtures::{compilers, TestEnv};
use tark_wasmer::lowlevel::Val;
use tark_wasmer::AbiKind;
use tark_wasmer::PluginHost;

fn host(env: &TestEnv, c: tark_wasmer::engine::Compiler) -> PluginHost {
    env.host(c)
}

fn call(host: &mut PluginHost, func: &str, args: Vec<Val>) -> Val {
    host.get_mut("conformance")
        .expect("loaded")
        .call_canonical("conformance", func, &args)
        .unwrap_or_else(|e| panic!("{func}: {e}"))
        .expect("a result")
}

fn scalars(flag: bool, n: i64) -> Val {
    Val::Record(vec![
        Val::Bool(flag),
        Val::U8(u8::MAX),
        Val::S8(i8::MIN),
        Val::U16(u16::MAX),
        Val::S16(i16::MIN),
        Val::U32(u32::MAX),
        Val::S32(i32::MIN),
        Val::U64(u64::MAX),
        Val::S64(n),
        Val::Char('😀'),
    ])
}

fn shapes() -> Vec<Val> {
    vec![
        Val::Variant(0, None),
        Val::Variant(1, Some(Box::new(Val::U8(200)))),
        Val::Variant(2, Some(Box::new(Val::U64(u64::MAX)))),
        Val::Variant(3, Some(Box::new(Val::string("héllo wörld ✓")))),
        Val::Variant(
            4,
            Some(Box::new(Val::Tuple(vec![Val::U32(7), Val::string("")]))),
        ),
    ]
}

fn options() -> Vec<Val> {
    vec![
        Val::Option(None),
        Val::some(Val::Option(None)),
        Val::some(Val::some(Val::string(""))),
        Val::some(Val::some(Val::string("日本語"))),
    ]
}

fn results() -> Vec<Val> {
    vec![
        Val::ok(Some(Val::ok(Some(Val::string("fine"))))),
        Val::ok(Some(Val::err(Some(Val::U32(u32::MAX))))),
        Val::err(Some(Val::string("outer error"))),
        Val::err(Some(Val::string(""))),
    ]
}

fn items(n: usize) -> Val {
    Val::List(
        (0..n)
            .map(|i| {
                Val::Record(vec![
                    Val::String(format!("item-{i}-ü")),
                    Val::List((0..(i % 3)).map(|t| Val::String(format!("t{t}"))).collect()),
                    if i % 2 == 0 {
                        Val::some(Val::S64(-(i as i64) - 1))
                    } else {
                        Val::Option(None)
                    },
                    Val::Enum((i % 3) as u32),
                ])
            })
            .collect(),
    )
}

fn env() -> TestEnv {
    let env = TestEnv::new();
    env.install_example("conformance");
    env
}

#[test]
fn every_type_round_trips_host_guest_host() {
    for c in compilers() {
        let env = env();
        let mut h = host(&env, c);
        let p = h.get_mut("conformance").expect("loaded");
        assert_eq!(p.abi(), AbiKind::Canonical);
        assert_eq!(p.world(), Some("conformance-world"));
        let big = "x".repeat(1 << 20);
        for s in ["", "a", "non-ASCII: ünïcødé ✓ 😀 日本語", big.as_str()] {
            assert_eq!(
                call(&mut h, "echo-string", vec![Val::string(s)]),
                Val::string(s),
                "{c}"
            );
        }
        for b in [vec![], vec![0u8, 255, 1], vec![7u8; 1 << 20]] {
            assert_eq!(
                call(&mut h, "echo-bytes", vec![Val::Bytes(b.clone())]),
                Val::Bytes(b)
            );
        }
        let u32s = Val::List(
            (0..10_000u32)
                .map(|i| Val::U32(i.wrapping_mul(2654435761)))
                .collect(),
        );
        assert_eq!(call(&mut h, "echo-u32s", vec![u32s.clone()]), u32s);
        assert_eq!(
            call(&mut h, "echo-u32s", vec![Val::List(vec![])]),
            Val::List(vec![])
        );
        let strings = Val::List((0..10_000).map(|i| Val::String(format!("s{i}é"))).collect());
        assert_eq!(call(&mut h, "echo-strings", vec![strings.clone()]), strings);
        for sc in [
            scalars(true, i64::MIN),
            scalars(false, -1),
            scalars(true, i64::MAX),
        ] {
            assert_eq!(call(&mut h, "echo-scalars", vec![sc.clone()]), sc);
        }
        let tuple = Val::Tuple(vec![
            Val::string("tüple"),
            Val::U64(u64::MAX),
            Val::S8(-5),
            Val::Bool(true),
        ]);
        assert_eq!(call(&mut h, "echo-tuple", vec![tuple.clone()]), tuple);
        for i in 0..3 {
            assert_eq!(call(&mut h, "echo-color", vec![Val::Enum(i)]), Val::Enum(i));
        }
        for v in shapes() {
            assert_eq!(call(&mut h, "echo-shape", vec![v.clone()]), v);
        }
        for v in options() {
            assert_eq!(call(&mut h, "echo-option", vec![v.clone()]), v);
        }
        for v in results() {
            assert_eq!(call(&mut h, "echo-result", vec![v.clone()]), v);
        }
        for n in [0, 1, 10_000] {
            assert_eq!(call(&mut h, "echo-items", vec![items(n)]), items(n));
        }
    }
}

#[test]
fn every_type_round_trips_through_host_imports() {
    for c in compilers() {
        let env = env();
        let mut h = host(&env, c);
        let big = "é".repeat(1 << 19);
        for s in ["", "relay ✓", big.as_str()] {
            assert_eq!(
                call(&mut h, "relay-string", vec![Val::string(s)]),
                Val::string(s),
                "{c}"
            );
        }
        let strings = Val::List((0..10_000).map(|i| Val::String(format!("r{i}"))).collect());
        assert_eq!(
            call(&mut h, "relay-strings", vec![strings.clone()]),
            strings
        );
        let sc = scalars(true, -42);
        assert_eq!(call(&mut h, "relay-scalars", vec![sc.clone()]), sc);
        for v in shapes() {
            assert_eq!(call(&mut h, "relay-shape", vec![v.clone()]), v);
        }
        for v in options() {
            assert_eq!(call(&mut h, "relay-option", vec![v.clone()]), v);
        }
        for v in results() {
            assert_eq!(call(&mut h, "relay-result", vec![v.clone()]), v);
        }
        assert_eq!(
            call(&mut h, "relay-items", vec![items(10_000)]),
            items(10_000)
        );
        // The instance stayed healthy through it all.
        assert_eq!(h.get("conformance").expect("loaded").instances_created(), 1);
    }
}

#[test]
fn spilled_parameters_large_results_and_sums() {
    for c in compilers() {
        let env = env();
        let mut h = host(&env, c);
        let args = vec![
            Val::U8(255),
            Val::U16(65535),
            Val::U32(u32::MAX),
            Val::U64(u64::MAX),
            Val::S8(-128),
            Val::S16(-32768),
            Val::S32(i32::MIN),
            Val::S64(i64::MIN),
            Val::Bool(true),
            Val::Char('😀'),
            Val::string("kay"),
            Val::Bytes(vec![1, 2, 3]),
            Val::U32(7),
            Val::U32(8),
            Val::string("oh"),
        ];
        assert_eq!(
            call(&mut h, "many-params", args),
            Val::string("255|65535|4294967295|18446744073709551615|-128|-32768|-2147483648|-9223372036854775808|true|😀|kay|[1, 2, 3]|7|8|oh"),
            "{c}"
        );
        let l = Val::List((0..10_000u32).map(|_| Val::U32(u32::MAX)).collect());
        assert_eq!(
            call(&mut h, "sum-u32s", vec![l]),
            Val::U64(10_000 * u64::from(u32::MAX))
        );
        let s = call(
            &mut h,
            "make-string",
            vec![Val::Char('ß'), Val::U32(1 << 19)],
        );
        assert_eq!(s, Val::String("ß".repeat(1 << 19)));
        // Many calls on one instance: guest memory does not grow with each call
        // (post-return frees results, the guest frees what the host lowered).
        let before = h
            .get("conformance")
            .and_then(|p| p.memory_pages())
            .expect("live");
        for _ in 0..200 {
            call(
                &mut h,
                "echo-string",
                vec![Val::string("y".repeat(64 * 1024))],
            );
        }
        let after = h
            .get("conformance")
            .and_then(|p| p.memory_pages())
            .expect("live");
        assert!(
            after <= before + 2,
            "memory grew from {before} to {after} pages"
        );
    }
}

#[test]
fn json_mapping_of_the_call_command() {
    let env = env();
    let mut h = host(&env, tark_wasmer::engine::Compiler::Singlepass);
    let p = h.get_mut("conformance").expect("loaded");
    let j = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json");
    let out = p
        .call_canonical_json("echo-items", &[j(r#"[{"name":"a","tags":["x"],"score":-3,"color":"blue"},{"name":"b","tags":[],"score":null,"color":"red"}]"#)])
        .expect("call");
    assert_eq!(
        out.to_string(),
        r#"[{"name":"a","tags":["x"],"score":-3,"color":"blue"},{"name":"b","tags":[],"score":null,"color":"red"}]"#
    );
    let out = p
        .call_canonical_json("echo-result", &[j(r#"{"ok":{"err":5}}"#)])
        .expect("call");
    assert_eq!(out.to_string(), r#"{"ok":{"err":5}}"#);
    let out = p
        .call_canonical_json("echo-shape", &[j(r#"{"pair":[1,"z"]}"#)])
        .expect("call");
    assert_eq!(out.to_string(), r#"{"pair":[1,"z"]}"#);
    let out = p
        .call_canonical_json("echo-option", &[j(r#"{"some":null}"#)])
        .expect("call");
    assert_eq!(out.to_string(), r#"{"some":null}"#);
    let out = p.call_canonical_json("echo-scalars", &[j(r#"{"flag":true,"a_u8":1,"a_s8":-1,"a_u16":2,"a_s16":-2,"a_u32":3,"a_s32":-3,"a_u64":18446744073709551615,"a_s64":-9223372036854775808,"a_char":"é"}"#)]).expect("call");
    assert_eq!(out["a_u64"], serde_json::json!(u64::MAX));
    assert_eq!(out["a_s64"], serde_json::json!(i64::MIN));
    let err = p
        .call_canonical_json("echo-color", &[j(r#""purple""#)])
        .expect_err("unknown case")
        .to_string();
    // The plugin author's words: the case, and the enum in WIT syntax.
    assert!(
        err.contains("unknown case \"purple\"; expected enum { red, green, blue"),
        "{err}"
    );
}
