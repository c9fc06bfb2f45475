#!/usr/bin/env bash
# Prints the size of what a page downloads from the package (pkg/index.js: the one module, with
# the wasm inside) gzip -9, and fails over the 40 KB budget. Run by scripts/test.sh after
# scripts/build-pkg.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=40960
gz() { gzip -9c "$1" | wc -c; }
raw() { wc -c < "$1"; }
w=target/pkg-stage/tim_wasm_bg.wasm; e=pkg/index.js
total=$(gz $e)
printf 'size: wasm %d B raw / %d B gzip -9 (inside index.js as base64 of its DEFLATE stream)\n' "$(raw $w)" "$(gz $w)"
printf 'size: pkg/index.js %d B raw / %d B gzip -9 = everything a page downloads (budget %d B; tim-js-sdk 2.27.6: 130 KB, centrifuge 5.8: 23 KB)\n' \
  "$(raw $e)" "$total" "$BUDGET"
if [ "$total" -gt "$BUDGET" ]; then echo "size: OVER BUDGET" >&2; exit 1; fi
