#!/usr/bin/env bash
# Installs what scripts/build-plugins.sh needs to build the example guest plugins to wasm.
#
# Idempotent. If rustup already has both wasm targets (a normal developer machine after
# `rustup target add wasm32-wasip1 wasm32-unknown-unknown`), there is nothing to do.
# Otherwise (machines that cannot reach the rustup servers, e.g. CI) it installs Debian's
# Rust toolchain with its standard-library source, wasm-ld, wasi-libc and wabt, which
# build-plugins.sh then uses with `-Z build-std` (see shared/toolchain/wasm-plugins.md).
set -euo pipefail

TARGETS=(wasm32-wasip1 wasm32-unknown-unknown)
PACKAGES=(rustc-web cargo-web rust-web-src lld wasi-libc wabt)

if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup target list --installed 2>/dev/null || true)"
    have_all=1
    for t in "${TARGETS[@]}"; do
        grep -qx "$t" <<<"$installed" || have_all=0
    done
    if [[ $have_all == 1 ]]; then
        echo "install-wasm-toolchain: rustup has ${TARGETS[*]}; nothing to do"
        exit 0
    fi
fi

is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

missing=()
for p in "${PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-wasm-toolchain: Debian packages already installed: ${PACKAGES[*]}"
else
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "install-wasm-toolchain: need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "install-wasm-toolchain: installing ${missing[*]}"
    # One `apt-get update` first: a fresh machine may have no (or stale) package lists.
    if ! "${SUDO[@]}" apt-get update -q; then
        echo "install-wasm-toolchain: apt-get update failed" >&2
        exit 1
    fi
    if ! "${SUDO[@]}" apt-get install -y -q "${missing[@]}"; then
        echo "install-wasm-toolchain: apt-get install ${missing[*]} failed" >&2
        exit 1
    fi
fi

# Sanity: the pieces build-plugins.sh relies on.
problems=()
[[ -x /usr/bin/cargo ]] || problems+=("/usr/bin/cargo (cargo-web)")
[[ -x /usr/bin/rustc ]] || problems+=("/usr/bin/rustc (rustc-web)")
[[ -d /usr/lib/rustlib/src/rust/library ]] || problems+=("/usr/lib/rustlib/src/rust/library (rust-web-src)")
command -v wasm-ld >/dev/null 2>&1 || problems+=("wasm-ld (lld)")
[[ -f /usr/lib/wasm32-wasi/libc.a ]] || problems+=("/usr/lib/wasm32-wasi/libc.a (wasi-libc)")
command -v wasm-objdump >/dev/null 2>&1 || problems+=("wasm-objdump (wabt)")
if [[ ${#problems[@]} -gt 0 ]]; then
    echo "install-wasm-toolchain: still missing after install: ${problems[*]}" >&2
    exit 1
fi
echo "install-wasm-toolchain: ready ($(/usr/bin/rustc --version))"
