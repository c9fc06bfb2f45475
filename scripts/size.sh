#!/usr/bin/env bash
# Prints the size of what a page downloads from the package gzip -9, for each of its two builds
# (a page loads one of them, never both): pkg/index.js, the ES module, and pkg/tim-wasm.js, the
# script-tag build defining the global TIM; each has the wasm inside. Fails when either is over
# the 40 KB budget. Run by scripts/test.sh after scripts/build-pkg.sh.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
BUDGET=40960
gz() { gzip -9c "$1" | wc -c; }
raw() { wc -c < "$1"; }
w=target/pkg-stage/tim_wasm_bg.wasm
printf 'size: wasm %d B raw / %d B gzip -9 (inside each build as base64 of its DEFLATE stream)\n' "$(raw $w)" "$(gz $w)"
over=0
for f in pkg/index.js pkg/tim-wasm.js; do
  case $f in
    */index.js) what="the ES module (import TIM from 'tim-wasm')";;
    *) what="the script-tag build (<script src>, global TIM)";;
  esac
  total=$(gz $f)
  printf 'size: %s %d B raw / %d B gzip -9 = everything a page using %s downloads (budget %d B; tim-js-sdk 2.27.6: 130 KB, centrifuge 5.8: 23 KB)\n' \
    "$f" "$(raw $f)" "$total" "$what" "$BUDGET"
  if [ "$total" -gt "$BUDGET" ]; then echo "size: $f OVER BUDGET" >&2; over=1; fi
done
exit $over
