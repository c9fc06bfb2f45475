#!/usr/bin/env bash
# Runs every test: formatting and lints, native tests (session core in virtual time, UserSig,
# server through its router and real sockets), browser tests in headless Chrome, Firefox and WebKit
# against a live timd, the npm package build with its size budget, and the end-to-end page test.
# This is the README's test command; .ci/run runs it too.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
./scripts/setup.sh
. scripts/env.sh

step() { printf '\n== test: %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (native, all targets; the SDK for wasm)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p tim-wasm --target wasm32-unknown-unknown --all-targets --quiet -- -D warnings

step "native tests"
cargo test --workspace --quiet

step "fuzz smoke: every target for ${TIM_FUZZ_SMOKE_SECONDS:=10} s (scripts/fuzz.sh; 0 skips)"
[ "$TIM_FUZZ_SMOKE_SECONDS" = 0 ] || ./scripts/fuzz.sh all "$TIM_FUZZ_SMOKE_SECONDS"

step "soak smoke: 1 minute of churn against one timd and, at once, 3 nodes on Redis (tim-bench soak)"
# The hour-long run is `scripts/bench.sh soak --minutes 60`; this one (--smoke) only fails on a
# lost session, a spurious kick or an error the mix did not ask for: the rate two debug builds
# reach on a shared machine is printed, not checked (figures are printed).
cargo build -p timd-bin -p tim-bench --quiet
mkdir -p target/soak-smoke
soak_smoke() {
  target/debug/tim-bench soak --smoke --timd target/debug/timd --minutes 1 --sample-secs 15 --steady 50 \
    --out target/soak-smoke "$@" > "target/soak-smoke/run${1:-}.log" 2>&1
}
soak_smoke & soak_embedded=$!
soak_smoke --cluster & soak_cluster=$!
soak_ok=0
wait "$soak_embedded" || soak_ok=1
wait "$soak_cluster" || soak_ok=1
cat target/soak-smoke/run.log target/soak-smoke/run--cluster.log >&2
[ "$soak_ok" = 0 ]

step "chaos: the docs' rules checked on 2 minutes of clients against 3 nodes on Redis under faults (tim-bench chaos), and a run with a loss the docs do not promise to survive (FLUSHALL), which the checker must flag"
# Longer runs: scripts/bench.sh chaos (10 minutes).
if ! target/debug/tim-bench chaos --timd target/debug/timd --seconds 120 > target/chaos.log 2>&1; then
  cat target/chaos.log >&2; exit 1
fi
cat target/chaos.log >&2
if target/debug/tim-bench chaos --timd target/debug/timd --seconds 45 --break-with flushall > target/chaos-broken.log 2>&1 \
  || ! grep -q "BROKEN  no resume after a logout or kick was acknowledged" target/chaos-broken.log \
  || ! grep -q "BROKEN  no login with a UserSig revoked" target/chaos-broken.log; then
  cat target/chaos-broken.log >&2
  echo "the chaos checker did not flag the dead tickets and revoked UserSigs a FLUSHALL brings back" >&2; exit 1
fi
echo "== the FLUSHALL run was flagged, as it must be:" >&2
grep -E "^  (faults|verdicts)|FLUSHALL|BROKEN|  ok " target/chaos-broken.log >&2

step "start timd for the browser tests"
cargo build -p timd-bin -p tim-testproxy --quiet
tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); port_multi=$(free_port)
export TIMD_TEST_URL="ws://127.0.0.1:$port" TIMD_TEST_URL_MULTI="ws://127.0.0.1:$port_multi"
export TIMD_TEST_KEY="tim-wasm-test-key-0123456789abcdef"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
# Default login settings (one Web instance, dual policy) and the seed's "Online Web Instances = 2".
start_timd() {
  local name=$1 port=$2; shift 2
  RUST_LOG=${RUST_LOG:-warn} target/debug/timd serve --listen "127.0.0.1:$port" \
    --sdkappid 1400012345 --key "$TIMD_TEST_KEY" --data-dir "$tmp/$name" --allowed-origins '*' --login-rate-per-user 0 "$@" > "$tmp/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$tmp/$name.log" >&2; return 1
}
start_timd default "$port"
start_timd multi "$port_multi" --web-instances 2 --login-policy single

step "browser tests: wasm-pack test --headless --chrome --firefox, and WebKit (MiniBrowser on Xvfb)"
export WASM_BINDGEN_TEST_TIMEOUT=120  # per test file (runner default 20 s); lifetime.rs takes ~45 s
# WebKitGTK's MiniBrowser has no headless mode: an Xvfb on a free display (-displayfd picks it),
# killed at the end, which the e2e and consumer tests use too (WEBKIT_DISPLAY).
Xvfb -displayfd 3 -screen 0 1280x1024x24 -nolisten tcp 3>"$tmp/display" 2>"$tmp/xvfb.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$tmp/display" ] && break; sleep 0.1; done
export WEBKIT_DISPLAY=":$(cat "$tmp/display")"
# The runner drives WebKitWebDriver as it would safaridriver (wasm-pack's --safaridriver sets
# SAFARIDRIVER): it asks for a session without capabilities, and WebKitWebDriver's default
# browser is MiniBrowser --automation.
if ! DISPLAY=$WEBKIT_DISPLAY wasm-pack test --headless --chrome --firefox --safari --safaridriver "$(command -v WebKitWebDriver)"; then
  for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -30 "$f" >&2; done; exit 1
fi

step "npm package and its size (the ES module and the script-tag build, each)"
./scripts/build-pkg.sh
./scripts/size.sh

step "the packed tarball as web projects install it: package check; plain page, <script src> page, Vite, webpack, esbuild in Chromium, Firefox and WebKit; tsc; Node and Vite SSR (scripts/consumers.sh)"
./scripts/consumers.sh --no-build

step "the docs' commands: every shell block of README.md and docs/ run as written, or found in the script CI runs (node --test tests/docs)"
node --test tests/docs/

step "end to end: seed, demo, tabs, callbacks, settings, faults, refusals, visibility, parity, leaks, cluster, wss through the deploy/ nginx and HAProxy examples (tls) in real Chromium, Firefox and WebKit (node --test tests/e2e)"
node --test --test-concurrency=1 tests/e2e/

echo "== test: all passed" >&2
