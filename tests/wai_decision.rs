//! Evidence for the README's decision on `wai-bindgen-wasmer` (the design card's WAI
//! bindings for wasmer): tark's plugins speak the component model's canonical ABI as
//! wit-bindgen 0.36 lowers it, which WAI tooling neither parses nor links against.

mod common;

use common::fixtures::{ensure_plugins_built, example_plugin_dir};

#[test]
fn wai_parser_cannot_read_the_tark_contract() {
    // WAI predates WIT packages, interfaces and worlds.
    for file in ["wit/tark.wit", "wit/hook.wit"] {
        let path = common::fixtures::repo_root().join(file);
        let text = std::fs::read_to_string(&path).expect("read wit");
        let err = wai_parser::Interface::parse("tark", &text);
        assert!(err.is_err(), "{file} unexpectedly parsed as WAI");
    }
}

#[test]
fn wit_bindgen_modules_use_canonical_abi_names_not_wai_names() {
    ensure_plugins_built();
    let wasm = std::fs::read(example_plugin_dir("sdk-auth").join("plugin.wasm")).expect("wasm");
    let engine = wasmer::Engine::default();
    let module = wasmer::Module::new(&engine, &wasm).expect("compiles");
    let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
    // What wit-bindgen 0.36 emits (and this host's canonical bridge uses)...
    assert!(exports.iter().any(|e| e == "cabi_realloc"));
    assert!(exports
        .iter()
        .any(|e| e == "tark:plugin/auth-plugin#display-name"));
    assert!(exports
        .iter()
        .any(|e| e.starts_with("cabi_post_tark:plugin/")));
    // ...and what WAI-generated glue expects of a guest (wai-bindgen-rust's runtime).
    assert!(!exports
        .iter()
        .any(|e| e == "canonical_abi_realloc" || e == "canonical_abi_free"));
    let imports: Vec<String> = module.imports().map(|i| i.module().to_string()).collect();
    assert!(imports.iter().any(|m| m == "tark:plugin/storage"));
}
