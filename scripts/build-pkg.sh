#!/usr/bin/env bash
# Builds the npm package into pkg/: wasm-pack (release: opt-level z, LTO, panics trap) into a
# staging directory, a recent wasm-opt -Oz, then scripts/bundle-pkg.mjs makes pkg/index.js ONE
# self-contained ES module (entry + glue + wasm inlined) beside index.d.ts and package.json.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
. scripts/env.sh

stage=target/pkg-stage
rm -rf "$stage" pkg
# Release profile (opt-level z, LTO) on the pinned nightly, std rebuilt with panic =
# "immediate-abort" and no panic locations or Debug formatting: a panic traps, and 4.6 KB of
# gzipped wasm that only formatted panic messages nobody sees is gone. Its own target directory,
# so the tests' stable builds stay cached.
RUSTUP_TOOLCHAIN=$TIM_PKG_TOOLCHAIN CARGO_TARGET_DIR=target/pkg-nightly \
RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none" \
  wasm-pack build --release --target web --out-dir "$stage" --out-name tim_wasm --no-pack . \
  -- -Zbuild-std=std,panic_abort >&2
wasm-opt -Oz --strip-debug --strip-producers \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$stage/tim_wasm_bg.wasm" -o "$stage/tim_wasm_bg.wasm"
mkdir -p pkg
node scripts/bundle-pkg.mjs "$stage" pkg
echo "pkg/ built" >&2
