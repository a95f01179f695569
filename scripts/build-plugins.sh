#!/usr/bin/env bash
# Builds the example guest plugins under tests/plugins/ to wasm and copies each module to
# tests/plugins/<name>/plugin.wasm (where its plugin.toml expects it).
#
# Usage: scripts/build-plugins.sh [name...]     (default: every plugin)
#
# - A plugin is any directory tests/plugins/<name>/ with both Cargo.toml and plugin.toml. It
#   must be a member of the tests/plugins cargo workspace. Its wasm target is the first line
#   of tests/plugins/<name>/target.txt (default wasm32-wasip1).
# - Plugins are built per target in one cargo invocation (so a `-Z build-std` std is built
#   once per target) into the shared CARGO_TARGET_DIR tests/plugins/target.
# - Route per target: rustup's cargo when `rustup target list --installed` has the target;
#   otherwise Debian's Rust (scripts/install-wasm-toolchain.sh) with
#   `RUSTC_BOOTSTRAP=1 -Z build-std=std,panic_abort` and wasm-ld.
# - Up-to-date builds are a fast no-op (cargo's own freshness checks); plugin.wasm is only
#   rewritten when the module changed.
# Works from any current directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PLUGINS="$ROOT/tests/plugins"
export CARGO_TARGET_DIR="$PLUGINS/target"
DEFAULT_TARGET=wasm32-wasip1

die() {
    echo "build-plugins: error: $*" >&2
    exit 1
}

[[ -f $PLUGINS/Cargo.toml ]] || die "no workspace at $PLUGINS/Cargo.toml"

# --- discover plugins --------------------------------------------------------------------------
all=()
for d in "$PLUGINS"/*/; do
    d="${d%/}"
    if [[ -f $d/Cargo.toml && -f $d/plugin.toml ]]; then
        all+=("${d##*/}")
    fi
done

selected=()
if [[ $# -gt 0 ]]; then
    for arg in "$@"; do
        n="${arg%/}"
        n="${n##*/}"
        [[ -f $PLUGINS/$n/Cargo.toml && -f $PLUGINS/$n/plugin.toml ]] ||
            die "unknown plugin '$arg' (expected a directory tests/plugins/$n with Cargo.toml and plugin.toml)"
        selected+=("$n")
    done
else
    selected=("${all[@]}")
fi
[[ ${#selected[@]} -gt 0 ]] || die "no plugins found under $PLUGINS"

# Workspace members, from the `members = [ ... ]` array of tests/plugins/Cargo.toml.
members="$(sed -n '/^members[[:space:]]*=/,/\]/p' "$PLUGINS/Cargo.toml" | grep -o '"[^"]*"' | tr -d '"')"

declare -A pkg_of target_of groups
for n in "${selected[@]}"; do
    grep -qx "$n" <<<"$members" ||
        die "tests/plugins/$n is not listed in the [workspace] members of tests/plugins/Cargo.toml"
    pkg="$(sed -n '/^\[package\]/,/^\[/s/^name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$PLUGINS/$n/Cargo.toml" | head -n1)"
    [[ -n $pkg ]] || die "tests/plugins/$n/Cargo.toml has no [package] name"
    t="$DEFAULT_TARGET"
    if [[ -f $PLUGINS/$n/target.txt ]]; then
        t="$(grep -v '^[[:space:]]*\(#\|$\)' "$PLUGINS/$n/target.txt" | head -n1 | tr -d '[:space:]')"
        [[ $t == wasm32-* ]] || die "tests/plugins/$n/target.txt: '$t' is not a wasm32 target"
    fi
    pkg_of[$n]="$pkg"
    target_of[$n]="$t"
    groups[$t]+="$n "
done

# --- choose the route per target -----------------------------------------------------------------
rustup_targets=""
rustup_cargo=""
if command -v rustup >/dev/null 2>&1; then
    rustup_targets="$(cd "$PLUGINS" && rustup target list --installed 2>/dev/null)" || rustup_targets=""
    # The cargo proxy next to rustup (PATH may put Debian's /usr/bin/cargo first).
    rustup_cargo="$(dirname "$(command -v rustup)")/cargo"
    [[ -x $rustup_cargo ]] || rustup_cargo=cargo
fi

debian_ready() {
    local missing=()
    [[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || missing+=("rustc-web/cargo-web")
    [[ -d /usr/lib/rustlib/src/rust/library ]] || missing+=("rust-web-src")
    PATH="/usr/bin:$PATH" command -v wasm-ld >/dev/null 2>&1 || missing+=("lld (wasm-ld)")
    if [[ $1 == wasm32-wasi* && ! -f /usr/lib/wasm32-wasi/libc.a ]]; then
        missing+=("wasi-libc")
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        die "rustup has no $1 target and Debian's wasm toolchain is incomplete (missing: ${missing[*]}); run scripts/install-wasm-toolchain.sh"
    fi
}

build_group() {
    local t="$1"
    shift
    local args=(build --release --target "$t")
    local n
    for n in "$@"; do
        args+=(-p "${pkg_of[$n]}")
    done
    if grep -qx "$t" <<<"$rustup_targets"; then
        echo "build-plugins: $t via rustup: $*"
        (cd "$PLUGINS" && "$rustup_cargo" "${args[@]}")
    else
        debian_ready "$t"
        local flags="-C linker=wasm-ld"
        if [[ $t == wasm32-wasi* ]]; then
            flags+=" -C link-self-contained=no -L /usr/lib/wasm32-wasi"
        fi
        echo "build-plugins: $t via Debian rustc + build-std: $*"
        # Debian's rustc/cargo must be used as a pair with their std source; clear variables
        # an outer cargo/rustup may have set that would override the compiler or flags.
        (cd "$PLUGINS" && env -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
            -u CARGO_BUILD_RUSTC -u CARGO_BUILD_TARGET -u RUSTUP_TOOLCHAIN \
            PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" \
            /usr/bin/cargo "${args[@]}" -Z build-std=std,panic_abort)
    fi
}

for t in $(printf '%s\n' "${!groups[@]}" | sort); do
    # shellcheck disable=SC2086 # word splitting of the name list is intended
    if ! build_group "$t" ${groups[$t]}; then
        die "cargo failed building ${groups[$t]% } for $t (see the messages above)"
    fi
done

# --- copy outputs ------------------------------------------------------------------------------
echo "build-plugins: built plugins:"
for n in "${selected[@]}"; do
    t="${target_of[$n]}"
    src="$CARGO_TARGET_DIR/$t/release/${pkg_of[$n]//-/_}.wasm"
    dest="$PLUGINS/$n/plugin.wasm"
    [[ -f $src ]] || die "cargo succeeded but $src does not exist (is tests/plugins/$n a cdylib?)"
    if ! cmp -s "$src" "$dest"; then
        # Atomic replace: tests may read plugin.wasm while another build runs.
        cp "$src" "$dest.tmp.$$"
        mv -f "$dest.tmp.$$" "$dest"
    fi
    size="$(wc -c <"$dest" | tr -d '[:space:]')"
    printf '  %-24s %-24s %8s bytes  tests/plugins/%s/plugin.wasm\n' "$n" "$t" "$size" "$n"
done
