//! Conformance test module for the host's canonical-ABI bridge (world `conformance-world`,
//! `wit/conformance.wit`).
//!
//! Every `echo-*` export hands its argument straight back, so a host test can check that
//! lowering into the guest and lifting out of it are exact inverses for every WIT type the
//! tark interfaces use. Every `relay-*` export passes its argument through the imported
//! `conformance-host` function of the same name and returns what the host answered, which
//! exercises the other direction (guest -> host import -> guest). No logic beyond that:
//! a failing test then points at the host, not at this module.

wit_bindgen::generate!({
    world: "conformance-world",
    path: "../../../wit",
});

use exports::tark::plugin::conformance::Guest;
use tark::plugin::conformance_host as host;
use tark::plugin::conformance_types::{Color, Item, Scalars, Shape};
use tark::plugin::log;

struct Conformance;

impl Guest for Conformance {
    fn echo_string(s: String) -> String {
        s
    }

    fn echo_bytes(b: Vec<u8>) -> Vec<u8> {
        b
    }

    fn echo_u32s(l: Vec<u32>) -> Vec<u32> {
        l
    }

    fn echo_strings(l: Vec<String>) -> Vec<String> {
        l
    }

    fn echo_scalars(s: Scalars) -> Scalars {
        s
    }

    fn echo_tuple(t: (String, u64, i8, bool)) -> (String, u64, i8, bool) {
        t
    }

    fn echo_color(c: Color) -> Color {
        c
    }

    fn echo_shape(s: Shape) -> Shape {
        s
    }

    fn echo_option(o: Option<Option<String>>) -> Option<Option<String>> {
        o
    }

    fn echo_result(r: Result<Result<String, u32>, String>) -> Result<Result<String, u32>, String> {
        r
    }

    fn echo_items(l: Vec<Item>) -> Vec<Item> {
        l
    }

    #[allow(clippy::too_many_arguments)]
    fn many_params(
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: i8,
        f: i16,
        g: i32,
        h: i64,
        i: bool,
        j: char,
        k: String,
        l: Vec<u8>,
        m: u32,
        n: u32,
        o: String,
    ) -> String {
        // The one use of the `log` import, so the module imports `tark:plugin/log` `info`.
        log::info("conformance ready");
        format!("{a}|{b}|{c}|{d}|{e}|{f}|{g}|{h}|{i}|{j}|{k}|{l:?}|{m}|{n}|{o}")
    }

    fn sum_u32s(l: Vec<u32>) -> u64 {
        // At most 2^30 elements fit in a 4 GiB memory, so the u64 sum cannot overflow.
        l.iter().map(|&x| u64::from(x)).sum()
    }

    fn make_string(c: char, len: u32) -> String {
        // Panics (a trap, panic = "abort") if the size overflows or cannot be allocated.
        c.to_string().repeat(len as usize)
    }

    fn relay_string(s: String) -> String {
        host::echo_string(&s)
    }

    fn relay_strings(l: Vec<String>) -> Vec<String> {
        host::echo_strings(&l)
    }

    fn relay_scalars(s: Scalars) -> Scalars {
        host::echo_scalars(s)
    }

    fn relay_shape(s: Shape) -> Shape {
        host::echo_shape(&s)
    }

    fn relay_option(o: Option<Option<String>>) -> Option<Option<String>> {
        host::echo_option(o.as_ref().map(|inner| inner.as_deref()))
    }

    fn relay_result(r: Result<Result<String, u32>, String>) -> Result<Result<String, u32>, String> {
        let borrowed = match &r {
            Ok(Ok(s)) => Ok(Ok(s.as_str())),
            Ok(Err(code)) => Ok(Err(*code)),
            Err(e) => Err(e.as_str()),
        };
        host::echo_result(borrowed)
    }

    fn relay_items(l: Vec<Item>) -> Vec<Item> {
        host::echo_items(&l)
    }
}

export!(Conformance);
