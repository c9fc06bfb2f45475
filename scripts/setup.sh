#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine of this kind.
# Idempotent: each step is skipped when its tool is already present at the right version.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

# Must equal the exact wasm-bindgen version pinned in Cargo.toml (wasm-pack only uses a
# wasm-bindgen-cli from PATH on an exact match).
WASM_BINDGEN_VERSION=0.2.130
export PATH="$HOME/.cargo/bin:$PATH"

# --locked first for reproducibility; without it when the registry mirror lacks a locked version.
cinstall() { cargo install --locked "$@" || cargo install "$@"; }
step() { printf '== setup: %s\n' "$*" >&2; }

rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || {
  step "rustup target add wasm32-unknown-unknown"; rustup target add wasm32-unknown-unknown; }

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  step "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  cinstall wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi
# The package build's pinned nightly (scripts/env.sh), with the std sources it rebuilds.
PKG_TOOLCHAIN=$(. scripts/env.sh && echo "$TIM_PKG_TOOLCHAIN")
rustup run "$PKG_TOOLCHAIN" rustc --version >/dev/null 2>&1 \
  && rustup component list --toolchain "$PKG_TOOLCHAIN" --installed 2>/dev/null | grep -q rust-src || {
  step "rustup toolchain install $PKG_TOOLCHAIN (rust-src, wasm32)"
  rustup toolchain install "$PKG_TOOLCHAIN" --profile minimal --component rust-src --target wasm32-unknown-unknown; }
command -v wasm-pack >/dev/null || { step "cargo install wasm-pack"; cinstall wasm-pack; }
# scripts/fuzz.sh (and test.sh's fuzz smoke) run cargo-fuzz on the pinned nightly above.
command -v cargo-fuzz >/dev/null || { step "cargo install cargo-fuzz"; cinstall cargo-fuzz; }

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v firefox-esr >/dev/null || command -v firefox >/dev/null || need_apt+=(firefox-esr)
# WebKit (Safari's engine): WebKitWebDriver drives WebKitGTK's MiniBrowser (shipped with the
# library webkit2gtk-driver depends on), which has no headless mode: it runs on Xvfb.
command -v WebKitWebDriver >/dev/null || need_apt+=(webkit2gtk-driver)
command -v Xvfb >/dev/null || need_apt+=(xvfb)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v haproxy >/dev/null || need_apt+=(haproxy)
# The TLS proxy examples in deploy/ (tests/e2e/tls.test.mjs runs nginx and haproxy in front of timd).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
# systemd-analyze verify checks deploy/timd.service (in the same test).
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# libfaketime: the cluster tests run a node whose clock is seconds off (cluster_review.rs).
command -v faketime >/dev/null || need_apt+=(faketime)
# The docs' commands (tests/docs): curl for the REST examples, sqlite3 for the store's backup.
command -v curl >/dev/null || need_apt+=(curl)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  step "apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v geckodriver >/dev/null || { step "cargo install geckodriver"; cinstall geckodriver; }

# Node tools pinned in tools/package-lock.json: a recent wasm-opt (Debian's binaryen 108 breaks
# release builds), esbuild (bundles the package), tiny-inflate (inside it), acorn (the package
# check), Tencent's official UserSig generator, tim-js-sdk and playwright-core (benchmarks).
# Reinstalled whenever the lock file changes.
if ! cmp -s tools/package-lock.json tools/node_modules/.installed-lock.json 2>/dev/null; then
  step "npm ci (tools/)"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock.json)
fi
step "done"
