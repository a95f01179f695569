//! The canonical ABI against hand-written hostile WAT guests that import and export
//! `tark:plugin/...` functions with the contract's core signatures: bad return pointers
//! handed to imports, bad result pointers, discriminants, chars, UTF-8 and list sizes
//! returned from exports, a misbehaving or missing `cabi_realloc`, a missing
//! `cabi_post_*`, and imports or exports with the wrong core signature. Each case asserts
//! the exact error, that the host keeps serving a second, healthy plugin, and (for
//! per-call faults) that the same plugin answers again on a fresh instance. Runs on both
//! compilers.

mod alloc_track;
mod common;

use common::fixtures::{compilers, TestEnv};
use common::wat::*;
use tark_wasmer::engine::Compiler;
use tark_wasmer::lowlevel::AbiError;
use tark_wasmer::lowlevel::Val;
use tark_wasmer::plugin::{AuthStatus, PollResult};
use tark_wasmer::InstantiateError;
use tark_wasmer::{CallError, GuestMemoryError, LinkError};
use tark_wasmer::{Error, PluginHost, PluginInstance};

#[global_allocator]
static ALLOC: alloc_track::Tracking = alloc_track::Tracking;

const PAGE: u64 = 65536;

/// Data at fixed addresses: "key" @16, "Hostile" @32, invalid UTF-8 @48,
/// (32, 7) = "Hostile" @64.
const DATA: &str = r#"
  (data (i32.const 16) "key")
  (data (i32.const 32) "Hostile")
  (data (i32.const 48) "\ff\fe")
  (data (i32.const 64) "\20\00\00\00\07\00\00\00")"#;

fn module(imports: &str, pages: u32, body: &[&str]) -> String {
    format!(
        "(module {imports}\n  (memory (export \"memory\") {pages})\n{DATA}\n{}\n)",
        body.join("\n")
    )
}

fn status_ok() -> String {
    export("auth-plugin", "status", "(i32.const 1)")
}

fn display_returning(ret: i32) -> String {
    export_post("auth-plugin", "display-name", &format!("(i32.const {ret})"))
}

/// The healthy second plugin: display name "Good", authenticated.
fn good_wat() -> String {
    r#"(module (memory (export "memory") 1)
  (data (i32.const 16) "Good")
  (data (i32.const 64) "\10\00\00\00\04\00\00\00")
  (func (export "tark:plugin/auth-plugin#display-name") (result i32) (i32.const 64))
  (func (export "cabi_post_tark:plugin/auth-plugin#display-name") (param i32))
  (func (export "tark:plugin/auth-plugin#status") (result i32) (i32.const 1)))"#
        .to_string()
}

// ----- harness -----

/// What kind of module `bad` is, for its healthy probe call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// auth-world: `status` answers `authenticated`.
    Auth,
    /// tool-world: `get-risk-level` answers `read-only`.
    Tool,
    /// conformance-world: `echo-color` echoes.
    Conformance,
    /// hook-world: `name` answers "Hostile".
    Hook,
}

struct Setup {
    _env: TestEnv,
    host: PluginHost,
    kind: Kind,
    compiler: Compiler,
}

fn setup(compiler: Compiler, kind: Kind, wat: &str) -> Setup {
    setup_with(compiler, kind, wat, |_| {})
}

fn setup_with(
    compiler: Compiler,
    kind: Kind,
    wat: &str,
    tweak: impl FnOnce(&mut TestEnv),
) -> Setup {
    let mut env = TestEnv::new();
    tweak(&mut env);
    env.install_wat("good", "auth", "", &good_wat());
    let ty = match kind {
        Kind::Auth => "auth",
        Kind::Tool | Kind::Conformance => "tool",
        Kind::Hook => "hook",
    };
    env.install_wat("bad", ty, "storage = true", wat);
    let host = env.host(compiler);
    Setup {
        _env: env,
        host,
        kind,
        compiler,
    }
}

impl Setup {
    fn bad(&mut self) -> &mut PluginInstance {
        self.host.get_mut("bad").expect("bad is loaded")
    }

    /// The healthy plugin still answers.
    fn assert_good_alive(&mut self) {
        let good = self.host.get_mut("good").expect("good is loaded");
        assert_eq!(
            good.auth_display_name().expect("good display name"),
            "Good",
            "{}",
            self.compiler
        );
        assert_eq!(
            good.auth_status().expect("good status"),
            AuthStatus::Authenticated
        );
    }

    /// The bad plugin answers a well-formed call.
    fn probe(&mut self) {
        let kind = self.kind;
        let c = self.compiler;
        let p = self.bad();
        match kind {
            Kind::Auth => assert_eq!(
                p.auth_status().expect("probe status"),
                AuthStatus::Authenticated,
                "{c}"
            ),
            Kind::Tool => assert_eq!(
                p.call_canonical("tool-plugin", "get-risk-level", &[Val::string("t")])
                    .expect("probe risk level"),
                Some(Val::Enum(0)),
                "{c}"
            ),
            Kind::Conformance => assert_eq!(
                p.call_canonical("conformance", "echo-color", &[Val::Enum(2)])
                    .expect("probe echo-color"),
                Some(Val::Enum(2)),
                "{c}"
            ),
            Kind::Hook => assert_eq!(p.hook_name().expect("probe name"), "Hostile", "{c}"),
        }
    }

    /// After a per-call fault: the instance was discarded, a fresh one answers, and the
    /// other plugin is unaffected.
    fn assert_recovers_on_fresh_instance(&mut self, before: u64) {
        self.probe();
        assert_eq!(
            self.bad().instances_created(),
            before + 1,
            "{}: the faulty instance must be replaced",
            self.compiler
        );
        self.assert_good_alive();
    }

    /// Run `f` on the bad plugin (after a probe has created its instance), expect a call
    /// error, and check recovery on a fresh instance.
    fn fails_per_call<T: std::fmt::Debug>(
        &mut self,
        f: impl FnOnce(&mut PluginInstance) -> tark_wasmer::Result<T>,
    ) -> CallError {
        self.probe();
        let before = self.bad().instances_created();
        let err = call_err(f(self.bad()));
        assert!(err.poisons_instance(), "{err:?} must discard the instance");
        self.assert_recovers_on_fresh_instance(before);
        err
    }
}

fn call_err<T: std::fmt::Debug>(r: tark_wasmer::Result<T>) -> CallError {
    match r {
        Err(Error::Call { plugin, source }) => {
            assert_eq!(plugin, "bad");
            source
        }
        other => panic!("expected a call error, got {other:?}"),
    }
}

/// `cabi_realloc` answered a null pointer for `size` bytes (alignment 1).
fn realloc_null(size: u32) -> AbiError {
    AbiError::Realloc {
        align: 1,
        size,
        ptr: 0,
        detail: "null pointer".into(),
    }
}

/// `cabi_realloc` answered `ptr`, where `size` bytes (alignment 1) do not fit in one page.
fn realloc_outside(ptr: u32, size: u32) -> AbiError {
    AbiError::Realloc {
        align: 1,
        size,
        ptr,
        detail: oob(u64::from(ptr), u64::from(size), PAGE).to_string(),
    }
}

fn import_trap(function: &str, import: &str, e: impl Into<AbiError>) -> CallError {
    CallError::Trap {
        function: function.to_string(),
        message: format!("host function tark:plugin/{import}: {}", e.into()),
    }
}

const DISPLAY: &str = "tark:plugin/auth-plugin#display-name";
const GET_TOKEN: &str = "tark:plugin/auth-plugin#get-token";
const LOGOUT: &str = "tark:plugin/auth-plugin#logout";
const POLL: &str = "tark:plugin/auth-plugin#poll";

// ----- bad pointers handed to imports -----

#[test]
fn bad_retptr_passed_to_an_import_traps_and_discards_the_instance() {
    let wat = module(
        &import("storage", "get", "get"),
        1,
        &[
            REALLOC_OK,
            &status_ok(),
            // Out of bounds: 0xfffffff0.
            &export_post(
                "auth-plugin",
                "display-name",
                "(call $get (i32.const 16) (i32.const 3) (i32.const -16)) (i32.const 64)",
            ),
            // Misaligned: option<string> needs alignment 4.
            &export_post(
                "auth-plugin",
                "get-token",
                "(call $get (i32.const 16) (i32.const 3) (i32.const 258)) (i32.const 512)",
            ),
            // The last 8 bytes of memory: the 12-byte answer does not fit.
            &export_post(
                "auth-plugin",
                "logout",
                "(call $get (i32.const 16) (i32.const 3) (i32.const 65528)) (i32.const 512)",
            ),
        ],
    );
    for c in compilers() {
        let mut s = setup(c, Kind::Auth, &wat);
        let e = s.fails_per_call(|p| p.auth_display_name());
        assert_eq!(
            e,
            import_trap(DISPLAY, "storage.get", oob(0xffff_fff0, 12, PAGE)),
            "{c}"
        );
        assert_eq!(
            e.to_string(),
            "plugin trapped in 'tark:plugin/auth-plugin#display-name': host function \
             tark:plugin/storage.get: guest memory range out of bounds: ptr=4294967280 len=12 \
             memory size=65536"
        );
        let e = s.fails_per_call(|p| p.auth_get_token());
        assert_eq!(
            e,
            import_trap(
                GET_TOKEN,
                "storage.get",
                GuestMemoryError::Misaligned { ptr: 258, align: 4 }
            ),
            "{c}"
        );
        // With a stored value the host allocates the string first, then refuses the retptr.
        s.bad()
            .context()
            .storage_set("key", "value")
            .expect("storage set");
        let e = s.fails_per_call(|p| p.auth_logout());
        assert_eq!(
            e,
            import_trap(LOGOUT, "storage.get", oob(65528, 12, PAGE)),
            "{c}"
        );
    }
}

// ----- bad results from exports -----

#[test]
fn export_result_pointers_and_strings_are_checked() {
    // (what display-name returns, extra data, expected error)
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
        // A (ptr, len) whose end passes 4 GiB.
        (128, pair(0xffff_ff00, 0x200), oob(0xffff_ff00, 0x200, PAGE)),
        (128, pair(65530, 7), oob(65530, 7, PAGE)),
        (128, pair(32, u32::MAX), oob(32, u64::from(u32::MAX), PAGE)),
    ];
    for c in compilers() {
        for (ret, data, expected) in &cases {
            let wat = module(
                "",
                1,
                &[
                    &format!("(data (i32.const 128) \"{data}\")"),
                    &status_ok(),
                    &display_returning(*ret),
                ],
            );
            let mut s = setup(c, Kind::Auth, &wat);
            let e = s.fails_per_call(|p| p.auth_display_name());
            assert_eq!(e, abi(DISPLAY, expected.clone()), "{c}: {ret} {data}");
            assert_eq!(e.to_string(), format!("{DISPLAY}: {expected}"));
        }
    }
}

#[test]
fn invalid_discriminants_are_refused() {
    for c in compilers() {
        // Flat enum results: status() -> auth-status (3 cases).
        for (ret, value) in [(7, 7u32), (3, 3), (256, 256), (-1, u32::MAX)] {
            let wat = module(
                "",
                1,
                &[&export(
                    "auth-plugin",
                    "status",
                    &format!("(i32.const {ret})"),
                )],
            );
            let mut s = setup(c, Kind::Auth, &wat);
            let e = call_err(s.bad().auth_status());
            assert_eq!(
                e,
                abi(
                    "tark:plugin/auth-plugin#status",
                    AbiError::InvalidDiscriminant { value, cases: 3 }
                ),
                "{c}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "tark:plugin/auth-plugin#status: invalid discriminant {value} for a type with 3 cases"
                )
            );
            s.assert_good_alive();
        }
        // In memory: result<string, string> with 5, poll-result (4 cases) with 4.
        let wat = module(
            "",
            1,
            &[
                REALLOC_OK,
                &status_ok(),
                r#"(data (i32.const 128) "\05")"#,
                r#"(data (i32.const 144) "\04")"#,
                &export_post("auth-plugin", "get-token", "(i32.const 128)"),
                &export_post("auth-plugin", "poll", "(i32.const 144)"),
            ],
        );
        let mut s = setup(c, Kind::Auth, &wat);
        let e = s.fails_per_call(|p| p.auth_get_token());
        assert_eq!(
            e,
            abi(
                GET_TOKEN,
                AbiError::InvalidDiscriminant { value: 5, cases: 2 }
            ),
            "{c}"
        );
        let e = s.fails_per_call(|p| p.auth_poll("code"));
        assert_eq!(
            e,
            abi(POLL, AbiError::InvalidDiscriminant { value: 4, cases: 4 }),
            "{c}"
        );
        // tool-result { success, output, error: option<string> } with the option's
        // discriminant (at +12) = 2.
        let wat = module(
            "",
            1,
            &[
                REALLOC_OK,
                &format!(
                    "(data (i32.const 128) \"\\01\\00\\00\\00{}\\02\")",
                    pair(32, 7)
                ),
                &export("tool-plugin", "get-risk-level", "(i32.const 0)"),
                &export_post("tool-plugin", "execute", "(i32.const 128)"),
            ],
        );
        let mut s = setup(c, Kind::Tool, &wat);
        let e = s.fails_per_call(|p| {
            p.call_canonical(
                "tool-plugin",
                "execute",
                &[Val::string("t"), Val::string("{}")],
            )
        });
        assert_eq!(
            e,
            abi(
                "tark:plugin/tool-plugin#execute",
                AbiError::InvalidDiscriminant { value: 2, cases: 2 }
            ),
            "{c}"
        );
        // Nested option / result / variant of the conformance world.
        let cases: [(&str, Val, String, u32, usize); 5] = [
            // option<option<string>>: outer disc 2.
            ("echo-option", Val::Option(None), "\\02".into(), 2, 2),
            // outer some (1), inner disc 2 at +4.
            (
                "echo-option",
                Val::Option(None),
                "\\01\\00\\00\\00\\02".into(),
                2,
                2,
            ),
            // result<result<string, u32>, string>: outer disc 5.
            (
                "echo-result",
                Val::err(Some(Val::string(""))),
                "\\05".into(),
                5,
                2,
            ),
            // outer ok (0), inner disc 9.
            (
                "echo-result",
                Val::err(Some(Val::string(""))),
                "\\00\\00\\00\\00\\09".into(),
                9,
                2,
            ),
            // shape (5 cases) with 5.
            ("echo-shape", Val::Variant(0, None), "\\05".into(), 5, 5),
        ];
        for (func, arg, data, value, cases) in cases {
            let wat = module(
                "",
                1,
                &[
                    REALLOC_OK,
                    &format!("(data (i32.const 256) \"{data}\")"),
                    &export("conformance", "echo-color", "(local.get 0)"),
                    &export_post("conformance", func, "(i32.const 256)"),
                ],
            );
            let mut s = setup(c, Kind::Conformance, &wat);
            let e = s.fails_per_call(|p| p.call_canonical("conformance", func, &[arg]));
            assert_eq!(
                e,
                abi(
                    &format!("tark:plugin/conformance#{func}"),
                    AbiError::InvalidDiscriminant { value, cases }
                ),
                "{c}: {func} {data}"
            );
        }
    }
}

fn default_scalars() -> Val {
    Val::Record(vec![
        Val::Bool(false),
        Val::U8(0),
        Val::S8(0),
        Val::U16(0),
        Val::S16(0),
        Val::U32(0),
        Val::S32(0),
        Val::U64(0),
        Val::S64(0),
        Val::Char('a'),
    ])
}

#[test]
fn chars_that_are_not_unicode_scalars_are_refused() {
    for c in compilers() {
        for bad in [0xd800u32, 0xdfff, 0x11_0000, u32::MAX] {
            // scalars: size 40, align 8, the char at +32.
            let wat = module(
                &import("conformance-host", "echo-scalars", "host_scalars"),
                1,
                &[
                    REALLOC_OK,
                    &format!("(data (i32.const 288) \"{}\")", le(bad)),
                    &export("conformance", "echo-color", "(local.get 0)"),
                    &export_post("conformance", "echo-scalars", "(i32.const 256)"),
                    // Passing the bad char *to* the host, flat, through an import.
                    &export_post("conformance", "relay-scalars", &format!(
                            "(call $host_scalars (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) \
                             (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) \
                             (i32.const {}) (i32.const 512)) (i32.const 512)",
                            bad as i32
                        )),
                ],
            );
            let mut s = setup(c, Kind::Conformance, &wat);
            let e = s.fails_per_call(|p| {
                p.call_canonical("conformance", "echo-scalars", &[default_scalars()])
            });
            assert_eq!(
                e,
                abi(
                    "tark:plugin/conformance#echo-scalars",
                    AbiError::InvalidChar(bad)
                ),
                "{c}"
            );
            assert!(e
                .to_string()
                .ends_with(&format!("invalid char value {bad:#x}")));
            let e = s.fails_per_call(|p| {
                p.call_canonical("conformance", "relay-scalars", &[default_scalars()])
            });
            assert_eq!(
                e,
                import_trap(
                    "tark:plugin/conformance#relay-scalars",
                    "conformance-host.echo-scalars",
                    AbiError::InvalidChar(bad)
                ),
                "{c}"
            );
        }
    }
}

// ----- sizes -----

/// get-tools returning a list<tool-def> (24 bytes each) at `ptr` with `len` elements.
fn tools_module(pages: u32, ptr: u32, len: u32, extra: &str) -> String {
    module(
        "",
        pages,
        &[
            REALLOC_OK,
            &format!("(data (i32.const 128) \"{}\")", pair(ptr, len)),
            extra,
            &export("tool-plugin", "get-risk-level", "(i32.const 0)"),
            &export_post("tool-plugin", "get-tools", "(i32.const 128)"),
        ],
    )
}

const GET_TOOLS: &str = "tark:plugin/tool-plugin#get-tools";

fn get_tools(p: &mut PluginInstance) -> tark_wasmer::Result<Option<Val>> {
    p.call_canonical("tool-plugin", "get-tools", &[])
}

#[test]
fn list_lengths_past_memory_are_refused_without_allocating_them() {
    for c in compilers() {
        // Byte sizes past u32 (and past memory): computed in u64, refused before any copy.
        for (len, bytes) in [
            (0x2000_0000u32, 24 * 0x2000_0000u64),
            (u32::MAX, 24 * u64::from(u32::MAX)),
            (2731, 24 * 2731), // 65544 bytes: just past a 64 KiB memory
        ] {
            let mut s = setup(c, Kind::Tool, &tools_module(1, 256, len, ""));
            s.probe();
            let (r, peak) = alloc_track::peak_during(|| get_tools(s.bad()));
            let e = call_err(r);
            assert_eq!(e, abi(GET_TOOLS, oob(256, bytes, PAGE)), "{c}: {len}");
            assert!(
                peak < 1 << 20,
                "{c}: the host held {peak} bytes refusing {len} items"
            );
            s.assert_recovers_on_fresh_instance(1);
        }
        // list<string> whose byte size is 0xfffffff8, list<u8> of u32::MAX bytes.
        for (func, len, bytes, align) in [
            ("echo-strings", 0x1fff_ffffu32, 0xffff_fff8u64, 4),
            ("echo-bytes", u32::MAX, u64::from(u32::MAX), 1),
        ] {
            let wat = module(
                "",
                1,
                &[
                    REALLOC_OK,
                    &format!("(data (i32.const 256) \"{}\")", pair(1024, len)),
                    &export("conformance", "echo-color", "(local.get 0)"),
                    &export_post("conformance", func, "(i32.const 256)"),
                ],
            );
            let mut s = setup(c, Kind::Conformance, &wat);
            s.probe();
            let arg = if func == "echo-bytes" {
                Val::Bytes(vec![])
            } else {
                Val::List(vec![])
            };
            let (r, peak) =
                alloc_track::peak_during(|| s.bad().call_canonical("conformance", func, &[arg]));
            let e = call_err(r);
            assert_eq!(
                e,
                abi(
                    &format!("tark:plugin/conformance#{func}"),
                    oob(1024, bytes, PAGE)
                ),
                "{c}: {func} align {align}"
            );
            assert!(peak < 1 << 20, "{c}: the host held {peak} bytes");
        }
    }
}

#[test]
fn data_over_the_per_call_limit_is_refused_without_allocating_it() {
    const LIMIT: usize = 65536;
    for c in compilers() {
        // One list over the limit (3000 * 24 = 72000 bytes, inside a 2-page memory).
        let mut s = setup_with(c, Kind::Tool, &tools_module(2, 0, 3000, ""), |env| {
            env.config.limits.guest_read_max = LIMIT;
        });
        s.probe();
        let (r, peak) = alloc_track::peak_during(|| get_tools(s.bad()));
        assert_eq!(
            call_err(r),
            abi(GET_TOOLS, AbiError::TooLarge { limit: LIMIT }),
            "{c}"
        );
        assert!(peak < 2 * LIMIT + 65536, "{c}: the host held {peak} bytes");
        s.assert_recovers_on_fresh_instance(1);
        // Many small pieces over the limit together: 100 tool-defs whose three strings
        // are all the same 4 KiB (zero bytes are valid UTF-8).
        let def = pair(4096, 4096).repeat(3);
        let defs = format!("(data (i32.const 8192) \"{}\")", def.repeat(100));
        let mut s = setup_with(c, Kind::Tool, &tools_module(1, 8192, 100, &defs), |env| {
            env.config.limits.guest_read_max = LIMIT;
        });
        s.probe();
        let (r, peak) = alloc_track::peak_during(|| get_tools(s.bad()));
        assert_eq!(
            call_err(r),
            abi(GET_TOOLS, AbiError::TooLarge { limit: LIMIT }),
            "{c}"
        );
        assert!(peak < 2 * LIMIT + 65536, "{c}: the host held {peak} bytes");
        s.assert_recovers_on_fresh_instance(1);
        // The same with 5 items (3 * 5 * 4 KiB + 120 bytes) fits under the limit.
        let mut s = setup_with(c, Kind::Tool, &tools_module(1, 8192, 5, &defs), |env| {
            env.config.limits.guest_read_max = LIMIT;
        });
        s.probe();
        let (r, peak) = alloc_track::peak_during(|| get_tools(s.bad()));
        match r.expect("under the limit") {
            Some(Val::List(items)) => assert_eq!(items.len(), 5),
            other => panic!("{other:?}"),
        }
        // (The allocation tracker sees what a call holds.)
        assert!(peak >= 3 * 5 * 4096, "{c}: only {peak} bytes seen");
        // The default limit (64 MiB) against a guest with 68.75 MiB of memory returning
        // a 68 MiB list<u8>: refused, and the host never holds the 68 MiB.
        let len = 68 << 20;
        let wat = module(
            "",
            1100,
            &[
                REALLOC_OK,
                &format!("(data (i32.const 256) \"{}\")", pair(1024, len)),
                &export("conformance", "echo-color", "(local.get 0)"),
                &export_post("conformance", "echo-bytes", "(i32.const 256)"),
            ],
        );
        let mut s = setup(c, Kind::Conformance, &wat);
        s.probe();
        let (r, peak) = alloc_track::peak_during(|| {
            s.bad()
                .call_canonical("conformance", "echo-bytes", &[Val::Bytes(vec![])])
        });
        assert_eq!(
            call_err(r),
            abi(
                "tark:plugin/conformance#echo-bytes",
                AbiError::TooLarge {
                    limit: tark_wasmer::Limits::default().guest_read_max
                }
            ),
            "{c}"
        );
        assert!(peak < 1 << 20, "{c}: the host held {peak} bytes");
        s.assert_recovers_on_fresh_instance(1);
    }
}

/// Regression: the per-call limit used to count only guest bytes, so a list of 1-byte
/// enums made the host build a 32-byte value per byte (32 MiB of guest memory held
/// 1.1 GB of host memory for 14 s). Every value built now counts too.
#[test]
fn small_guest_elements_cannot_multiply_host_memory() {
    const LIMIT: usize = 1 << 20;
    let wat = |len: u32| {
        module(
            "",
            2,
            &[
                &format!("(data (i32.const 128) \"{}\")", pair(65536, len)),
                &export_post("hook-plugin", "name", "(i32.const 64)"),
                &export_post("hook-plugin", "subscriptions", "(i32.const 128)"),
            ],
        )
    };
    let subscriptions =
        |p: &mut PluginInstance| p.call_canonical("hook-plugin", "subscriptions", &[]);
    for c in compilers() {
        // 64 KiB of zero bytes = 65536 valid `session-start` cases: 64 KiB of guest data,
        // 2 MiB as host values: over a 1 MiB limit.
        let mut s = setup_with(c, Kind::Hook, &wat(65536), |env| {
            env.config.limits.guest_read_max = LIMIT;
        });
        s.probe();
        let (r, peak) = alloc_track::peak_during(|| subscriptions(s.bad()));
        assert_eq!(
            call_err(r),
            abi(
                "tark:plugin/hook-plugin#subscriptions",
                AbiError::TooLarge { limit: LIMIT }
            ),
            "{c}"
        );
        assert!(peak < 2 * LIMIT, "{c}: the host held {peak} bytes");
        s.assert_recovers_on_fresh_instance(1);
        // 16384 cases: 16 KiB + 512 KiB of values, under the limit.
        let mut s = setup_with(c, Kind::Hook, &wat(16384), |env| {
            env.config.limits.guest_read_max = LIMIT;
        });
        s.probe();
        let (r, peak) = alloc_track::peak_during(|| subscriptions(s.bad()));
        match r.expect("under the limit") {
            Some(Val::List(items)) => {
                assert_eq!(items.len(), 16384);
                assert!(items.iter().all(|v| *v == Val::Enum(0)));
            }
            other => panic!("{c}: {other:?}"),
        }
        assert!((16384 * 32..2 * LIMIT).contains(&peak), "{c}: {peak}");
    }
}

// ----- cabi_realloc -----

#[test]
fn misbehaving_realloc_fails_the_export_call_cleanly() {
    let cases: Vec<(String, AbiError)> = vec![
        (realloc_returning(0), realloc_null(4)),
        (realloc_returning(-16), realloc_outside(0xffff_fff0, 4)),
        (realloc_returning(65534), realloc_outside(65534, 4)),
        (String::new(), AbiError::NoRealloc),
    ];
    for c in compilers() {
        for (realloc, expected) in &cases {
            let wat = module(
                "",
                1,
                &[
                    realloc,
                    &status_ok(),
                    r#"(data (i32.const 128) "\00")"#,
                    &export_post("auth-plugin", "poll", "(i32.const 128)"),
                ],
            );
            let mut s = setup(c, Kind::Auth, &wat);
            let e = s.fails_per_call(|p| p.auth_poll("abcd"));
            assert_eq!(e, abi(POLL, expected.clone()), "{c}: {realloc}");
        }
        // Trapping realloc.
        let wat = module(
            "",
            1,
            &[
                REALLOC_TRAP,
                &status_ok(),
                &export_post("auth-plugin", "poll", "(i32.const 128)"),
            ],
        );
        let mut s = setup(c, Kind::Auth, &wat);
        let e = s.fails_per_call(|p| p.auth_poll("abcd"));
        match &e {
            CallError::Abi { function, message } => {
                assert_eq!(function, POLL);
                assert!(
                    message.starts_with("cabi_realloc trapped: "),
                    "{c}: {message}"
                );
                assert!(message.contains("unreachable"), "{c}: {message}");
            }
            other => panic!("{c}: {other:?}"),
        }
        // An empty string still asks for (and checks) an allocation of 0 bytes.
        let wat = module(
            "",
            1,
            &[
                &realloc_returning(-16),
                &status_ok(),
                r#"(data (i32.const 128) "\00")"#,
                &export_post("auth-plugin", "poll", "(i32.const 128)"),
            ],
        );
        let mut s = setup(c, Kind::Auth, &wat);
        let e = s.fails_per_call(|p| p.auth_poll(""));
        assert_eq!(e, abi(POLL, realloc_outside(0xffff_fff0, 0)), "{c}");
        // Misaligned: a list<string> argument's element array needs alignment 4.
        let wat = module(
            "",
            1,
            &[
                REALLOC_MISALIGNED,
                r#"(data (i32.const 256) "\00\00\00\00\00\00\00\00")"#,
                &export("conformance", "echo-color", "(local.get 0)"),
                &export_post("conformance", "echo-strings", "(i32.const 256)"),
            ],
        );
        let mut s = setup(c, Kind::Conformance, &wat);
        let e = s.fails_per_call(|p| {
            p.call_canonical(
                "conformance",
                "echo-strings",
                &[Val::List(vec![Val::string("a")])],
            )
        });
        assert_eq!(
            e,
            abi("tark:plugin/conformance#echo-strings", realloc_misaligned()),
            "{c}"
        );
    }
}

#[test]
fn misbehaving_realloc_while_the_host_answers_an_import_traps_cleanly() {
    let body = |realloc: &str| {
        module(
            &format!(
                "{}\n{}",
                import("storage", "get", "get"),
                import("storage", "list-keys", "keys")
            ),
            1,
            &[
                realloc,
                &status_ok(),
                // display-name = storage.get("key"), answered at 512 (disc, ptr @516, len @520).
                &export_post(
                    "auth-plugin",
                    "display-name",
                    "(call $get (i32.const 16) (i32.const 3) (i32.const 512)) (i32.const 516)",
                ),
                &export_post(
                    "auth-plugin",
                    "get-token",
                    "(call $keys (i32.const 512)) (i32.const 128)",
                ),
            ],
        )
    };
    for c in compilers() {
        // Healthy first: the host allocates the answer with cabi_realloc.
        let mut s = setup(c, Kind::Auth, &body(REALLOC_OK));
        s.bad().context().storage_set("key", "value").expect("set");
        assert_eq!(s.bad().auth_display_name().expect("display"), "value");
        let cases: Vec<(String, AbiError)> = vec![
            (realloc_returning(0), realloc_null(5)),
            (realloc_returning(-16), realloc_outside(0xffff_fff0, 5)),
            (String::new(), AbiError::NoRealloc),
        ];
        for (realloc, expected) in cases {
            let mut s = setup(c, Kind::Auth, &body(&realloc));
            s.bad().context().storage_set("key", "value").expect("set");
            let e = s.fails_per_call(|p| p.auth_display_name());
            assert_eq!(
                e,
                import_trap(DISPLAY, "storage.get", expected),
                "{c}: {realloc}"
            );
        }
        let mut s = setup(c, Kind::Auth, &body(REALLOC_TRAP));
        s.bad().context().storage_set("key", "value").expect("set");
        let e = s.fails_per_call(|p| p.auth_display_name());
        match &e {
            CallError::Trap { function, message } => {
                assert_eq!(function, DISPLAY);
                assert!(
                    message.starts_with(
                        "host function tark:plugin/storage.get: cabi_realloc trapped: "
                    ),
                    "{c}: {message}"
                );
            }
            other => panic!("{c}: {other:?}"),
        }
        // list-keys: the strings are fine (alignment 1), the array (alignment 4) is not.
        let mut s = setup(c, Kind::Auth, &body(REALLOC_MISALIGNED));
        s.bad().context().storage_set("key", "value").expect("set");
        let e = s.fails_per_call(|p| p.auth_get_token());
        assert_eq!(
            e,
            import_trap(GET_TOKEN, "storage.list-keys", realloc_misaligned()),
            "{c}"
        );
    }
}

// ----- post-return -----

#[test]
fn missing_post_return_is_reported_and_a_trapping_one_discards_the_instance() {
    let wat = module(
        "",
        1,
        &[
            &status_ok(),
            &export("auth-plugin", "display-name", "(i32.const 64)"),
            r#"(data (i32.const 128) "\00\00\00\00\20\00\00\00\07\00\00\00")"#,
            &export("auth-plugin", "get-token", "(i32.const 128)"),
            r#"(data (i32.const 144) "\01")"#,
            &export("auth-plugin", "poll", "(i32.const 144)"),
            r#"(func (export "cabi_post_tark:plugin/auth-plugin#poll") (param i32) unreachable)"#,
            REALLOC_OK,
        ],
    );
    for c in compilers() {
        let mut s = setup(c, Kind::Auth, &wat);
        // status needs no post-return.
        s.probe();
        for (func, f) in [
            (
                DISPLAY,
                PluginInstance::auth_display_name as fn(&mut PluginInstance) -> _,
            ),
            (GET_TOKEN, PluginInstance::auth_get_token),
        ] {
            let e = call_err(f(s.bad()));
            assert_eq!(e, CallError::MissingPostReturn(func.into()), "{c}");
            assert_eq!(
                e.to_string(),
                format!(
                    "{func}: the plugin exports no post-return function `cabi_post_{func}` \
                     for a result that owns guest memory"
                )
            );
        }
        // Not a memory fault: the instance is kept.
        assert_eq!(s.bad().instances_created(), 1);
        s.probe();
        assert_eq!(s.bad().instances_created(), 1);
        let e = s.fails_per_call(|p| p.auth_poll("x"));
        match &e {
            CallError::Trap { function, message } => {
                assert_eq!(function, &format!("cabi_post_{POLL}"));
                assert!(message.contains("unreachable"), "{c}: {message}");
            }
            other => panic!("{c}: {other:?}"),
        }
        s.assert_good_alive();
        // And a correct post-return makes the same shapes work.
        let ok = module(
            "",
            1,
            &[
                &status_ok(),
                &display_returning(64),
                r#"(data (i32.const 128) "\00\00\00\00\20\00\00\00\07\00\00\00")"#,
                &export_post("auth-plugin", "get-token", "(i32.const 128)"),
                r#"(data (i32.const 144) "\01\00\00\00\20\00\00\00\07\00\00\00")"#,
                &export_post("auth-plugin", "poll", "(i32.const 144)"),
                REALLOC_OK,
            ],
        );
        let mut s = setup(c, Kind::Auth, &ok);
        assert_eq!(s.bad().auth_display_name().expect("name"), "Hostile");
        assert_eq!(s.bad().auth_get_token().expect("token"), "Hostile");
        assert_eq!(
            s.bad().auth_poll("x").expect("poll"),
            PollResult::Success("Hostile".into())
        );
    }
}

// ----- signatures -----

#[test]
fn imports_with_wrong_signatures_or_unknown_names_are_refused_at_link() {
    let cases: Vec<(&str, LinkError)> = vec![
        (
            r#"(import "tark:plugin/storage" "get" (func (param i32 i32) (result i32)))"#,
            LinkError::SignatureMismatch {
                module: "tark:plugin/storage".into(),
                name: "get".into(),
                expected: "(i32, i32, i32) -> ()".into(),
                found: "(i32, i32) -> i32".into(),
            },
        ),
        // The legacy ABI's shape of the same function.
        (
            r#"(import "tark:plugin/storage" "get" (func (param i32 i32 i32) (result i32)))"#,
            LinkError::SignatureMismatch {
                module: "tark:plugin/storage".into(),
                name: "get".into(),
                expected: "(i32, i32, i32) -> ()".into(),
                found: "(i32, i32, i32) -> i32".into(),
            },
        ),
        // ws.send takes an i64 handle.
        (
            r#"(import "tark:plugin/ws" "send" (func (param i32 i32 i32 i32)))"#,
            LinkError::SignatureMismatch {
                module: "tark:plugin/ws".into(),
                name: "send".into(),
                expected: "(i64, i32, i32, i32) -> ()".into(),
                found: "(i32, i32, i32, i32) -> ()".into(),
            },
        ),
        // Plugin interfaces are exported by plugins, never provided by the host.
        (
            r#"(import "tark:plugin/auth-plugin" "status" (func (result i32)))"#,
            LinkError::UnknownImport {
                module: "tark:plugin/auth-plugin".into(),
                name: "status".into(),
                found: "() -> i32".into(),
            },
        ),
        (
            r#"(import "tark:plugin/storage" "clear" (func (param i32)))"#,
            LinkError::UnknownImport {
                module: "tark:plugin/storage".into(),
                name: "clear".into(),
                found: "(i32) -> ()".into(),
            },
        ),
        (
            r#"(import "tark:plugin/shell" "exec" (func (param i32 i32 i32)))"#,
            LinkError::UnknownImport {
                module: "tark:plugin/shell".into(),
                name: "exec".into(),
                found: "(i32, i32, i32) -> ()".into(),
            },
        ),
    ];
    for c in compilers() {
        for (imp, expected) in &cases {
            let wat = module(imp, 1, &[&status_ok(), &display_returning(64)]);
            let mut s = setup(c, Kind::Auth, &wat);
            match s.bad().auth_status() {
                Err(Error::Instantiate {
                    plugin,
                    source: InstantiateError::Link(link),
                }) => {
                    assert_eq!(plugin, "bad");
                    assert_eq!(&link, expected, "{c}");
                }
                other => panic!("{c}: {imp}: expected a link error, got {other:?}"),
            }
            let text = s
                .bad()
                .auth_status()
                .expect_err("still refused")
                .to_string();
            assert_eq!(text, format!("plugin bad: {expected}"));
            s.assert_good_alive();
        }
    }
}

#[test]
fn exports_with_the_wrong_signature_are_a_clear_error_at_call() {
    let wat = module(
        "",
        1,
        &[
            &status_ok(),
            r#"(func (export "tark:plugin/auth-plugin#display-name") (result i64) (i64.const 64))"#,
            r#"(func (export "tark:plugin/auth-plugin#get-token") (param i32) (result i32) (i32.const 0))"#,
        ],
    );
    for c in compilers() {
        let mut s = setup(c, Kind::Auth, &wat);
        s.probe();
        let e = call_err(s.bad().auth_display_name());
        assert_eq!(
            e,
            CallError::ExportSignature {
                export: "tark:plugin/auth-plugin#display-name".into(),
                expected: "() -> i32".into(),
                found: "() -> i64".into(),
            },
            "{c}"
        );
        assert_eq!(
            e.to_string(),
            "export tark:plugin/auth-plugin#display-name has signature () -> i64, expected \
             () -> i32 (built against another tark.wit?)"
        );
        let e = call_err(s.bad().auth_get_token());
        assert_eq!(
            e.to_string(),
            "export tark:plugin/auth-plugin#get-token has signature (i32) -> i32, expected () -> i32 \
             (built against another tark.wit?)"
        );
        assert!(!s.bad().has_function("display-name"));
        assert!(s.bad().has_function("status"));
        // Nothing was run, the instance is kept, and the plugin still answers.
        assert_eq!(s.bad().instances_created(), 1);
        s.probe();
        s.assert_good_alive();
    }
}

// ----- typed imports and typed record-parameter exports -----

#[test]
fn typed_imports_check_every_argument_and_return_pointer() {
    let imports = [
        import("storage", "set", "set"),
        import("http", "get", "hget"),
        import("ws", "send", "wsend"),
        import("env", "get", "eget"),
        import("fs", "read", "fread"),
    ]
    .join("\n");
    let wat = module(
        &imports,
        1,
        &[
            REALLOC_OK,
            &status_ok(),
            // storage.set("key", <invalid UTF-8>).
            &export_post(
                "auth-plugin",
                "display-name",
                "(call $set (i32.const 16) (i32.const 3) (i32.const 48) (i32.const 2) \
                 (i32.const 512)) (i32.const 64)",
            ),
            // http.get("key", headers: one 16-byte pair at the last 8 bytes of memory).
            &export_post(
                "auth-plugin",
                "get-token",
                "(call $hget (i32.const 16) (i32.const 3) (i32.const 65528) (i32.const 1) \
                 (i32.const 512)) (i32.const 128)",
            ),
            // ws.send(1, "Hostile") answered at a misaligned pointer.
            &export_post(
                "auth-plugin",
                "logout",
                "(call $wsend (i64.const 1) (i32.const 32) (i32.const 7) (i32.const 258)) \
                 (i32.const 512)",
            ),
            // env.get(<4 GiB name>).
            &export_post(
                "auth-plugin",
                "poll",
                "(call $eget (i32.const 32) (i32.const -1) (i32.const 512)) (i32.const 128)",
            ),
            // fs.read("key") (denied: an err string) answered past the end of memory.
            &export_post(
                "auth-plugin",
                "start-device-flow",
                "(call $fread (i32.const 16) (i32.const 3) (i32.const -16)) (i32.const 128)",
            ),
        ],
    );
    for c in compilers() {
        let mut s = setup(c, Kind::Auth, &wat);
        let e = s.fails_per_call(|p| p.auth_display_name());
        assert_eq!(
            e,
            import_trap(
                DISPLAY,
                "storage.set",
                GuestMemoryError::InvalidUtf8 { ptr: 48, len: 2 }
            ),
            "{c}"
        );
        // Refused before the service: nothing was stored.
        assert_eq!(s.bad().context().storage_get("key").expect("get"), None);
        let e = s.fails_per_call(|p| p.auth_get_token());
        assert_eq!(
            e,
            import_trap(GET_TOKEN, "http.get", oob(65528, 16, PAGE)),
            "{c}"
        );
        let e = s.fails_per_call(|p| p.auth_logout());
        assert_eq!(
            e,
            import_trap(
                LOGOUT,
                "ws.send",
                GuestMemoryError::Misaligned { ptr: 258, align: 4 }
            ),
            "{c}"
        );
        let e = s.fails_per_call(|p| p.auth_poll("code"));
        assert_eq!(
            e,
            import_trap(POLL, "env.get", oob(32, u64::from(u32::MAX), PAGE)),
            "{c}"
        );
        let e = s.fails_per_call(|p| p.auth_start_device_flow());
        assert_eq!(
            e,
            import_trap(
                "tark:plugin/auth-plugin#start-device-flow",
                "fs.read",
                oob(0xffff_fff0, 12, PAGE)
            ),
            "{c}"
        );
    }
}

#[test]
fn typed_storage_imports_store_and_answer_through_guest_memory() {
    let imports = [
        import("storage", "set", "set"),
        import("storage", "delete", "del"),
    ]
    .join("\n");
    // display-name: storage.set("key", "Hostile"), then "Hostile" if the answer at 512 is
    // ok (0), else a pointer to a bad string. get-token: storage.delete("key"), the same.
    let check_ok = "(if (result i32) (i32.eqz (i32.load8_u (i32.const 512))) \
                    (then (i32.const 64)) (else (i32.const 3)))";
    let wat = module(
        &imports,
        1,
        &[
            REALLOC_OK,
            &status_ok(),
            &export_post(
                "auth-plugin",
                "display-name",
                &format!(
                    "(call $set (i32.const 16) (i32.const 3) (i32.const 32) (i32.const 7) \
                     (i32.const 512)) {check_ok}"
                ),
            ),
            &export_post(
                "auth-plugin",
                "logout",
                "(call $del (i32.const 16) (i32.const 3) (i32.const 512)) \
                 (if (result i32) (i32.eqz (i32.load8_u (i32.const 512))) \
                 (then (i32.const 768)) (else (i32.const 3)))",
            ),
            // logout's ok(()) answer.
            r#"(data (i32.const 768) "\00")"#,
        ],
    );
    for c in compilers() {
        let mut s = setup(c, Kind::Auth, &wat);
        assert_eq!(s.bad().auth_display_name().expect("display"), "Hostile");
        assert_eq!(
            s.bad().context().storage_get("key").expect("get"),
            Some("Hostile".to_string()),
            "{c}"
        );
        s.bad().auth_logout().expect("logout");
        assert_eq!(s.bad().context().storage_get("key").expect("get"), None);
        assert_eq!(s.bad().instances_created(), 1, "{c}");
    }
}

/// A channel plugin whose `send` (10 flat parameters: conversation-id, text, message-id,
/// is-final, metadata-json) answers `ok(send-result)` built from its arguments:
/// success = is-final, message-id = the given one, error = some(text). With is-final
/// false the message-id option's discriminant is made invalid (given + 2).
fn echo_send_wat() -> String {
    module(
        "",
        1,
        &[
            REALLOC_OK,
            &export("channel-plugin", "auth-status", "(i32.const 0)"),
            r#"(func (export "tark:plugin/channel-plugin#send")
  (param $cp i32) (param $cl i32) (param $tp i32) (param $tl i32)
  (param $md i32) (param $mp i32) (param $ml i32) (param $fin i32)
  (param $jp i32) (param $jl i32) (result i32)
  (i32.store8 (i32.const 1024) (i32.const 0))
  (i32.store8 (i32.const 1028) (local.get $fin))
  (i32.store8 (i32.const 1032)
    (i32.add (local.get $md) (i32.mul (i32.eqz (local.get $fin)) (i32.const 2))))
  (i32.store (i32.const 1036) (local.get $mp))
  (i32.store (i32.const 1040) (local.get $ml))
  (i32.store8 (i32.const 1044) (i32.const 1))
  (i32.store (i32.const 1048) (local.get $tp))
  (i32.store (i32.const 1052) (local.get $tl))
  (i32.const 1024))"#,
            &post("channel-plugin", "send"),
        ],
    )
}

#[test]
fn typed_record_parameter_export_passes_ten_flat_values_and_checks_the_answer() {
    use tark_wasmer::plugin::{OutboundMessage, SendResult};
    for c in compilers() {
        let env = TestEnv::new();
        env.install_wat("bad", "channel", "storage = true", &echo_send_wat());
        let mut host = env.host(c);
        let p = host.get_mut("bad").expect("loaded");
        let msg = OutboundMessage {
            conversation_id: "conv-1".into(),
            text: "hello there".into(),
            message_id: Some("m-42".into()),
            is_final: true,
            metadata_json: "{}".into(),
        };
        assert_eq!(
            p.channel_send(&msg).expect("send"),
            SendResult {
                success: true,
                message_id: Some("m-42".into()),
                error: Some("hello there".into()),
            },
            "{c}"
        );
        // A hostile discriminant in the typed result: refused, the instance discarded.
        let bad = OutboundMessage {
            message_id: None,
            is_final: false,
            ..msg.clone()
        };
        let e = call_err(p.channel_send(&bad));
        assert_eq!(
            e,
            abi(
                "tark:plugin/channel-plugin#send",
                AbiError::InvalidDiscriminant { value: 2, cases: 2 }
            ),
            "{c}"
        );
        assert!(e.poisons_instance());
        // A fresh instance answers again.
        assert!(p.channel_send(&msg).expect("send again").success);
        assert_eq!(p.instances_created(), 2, "{c}");
    }
}
