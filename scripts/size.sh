#!/usr/bin/env bash
# Prints the SDK's size as shipped (wasm + JS glue + entry point, gzip -9) and fails when it
# is over the 30 KB budget. Run by scripts/test.sh after scripts/build-pkg.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=30720
gz() { gzip -9c "$1" | wc -c; }
raw() { wc -c < "$1"; }
w=pkg/tim_wasm_bg.wasm; g=pkg/tim_wasm.js; e=pkg/index.js
total=$(( $(gz $w) + $(gz $g) + $(gz $e) ))
printf 'size: wasm %d B raw / %d B gzip -9; JS glue %d B / %d B; entry %d B / %d B\n' \
  "$(raw $w)" "$(gz $w)" "$(raw $g)" "$(gz $g)" "$(raw $e)" "$(gz $e)"
printf 'size: total %d B gzip -9 (budget %d B; tim-js-sdk 2.27.6: 130 KB, centrifuge 5.8: 23 KB)\n' "$total" "$BUDGET"
if [ "$total" -gt "$BUDGET" ]; then echo "size: OVER BUDGET" >&2; exit 1; fi
