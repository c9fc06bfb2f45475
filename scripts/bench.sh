#!/usr/bin/env bash
# Benchmarks with native clients against the real timd binary (release build, profile
# `server`), on loopback. Prints figures; they are not pass/fail tests, but the script exits
# non-zero if a run saw something wrong (a missing kick, a spurious kick, a lost session).
#
#   scripts/bench.sh                 # both: kick, then restart
#   scripts/bench.sh kick [ARGS]     # kick delivery latency (tim-bench kick --help)
#   scripts/bench.sh restart [ARGS]  # 10,000 sessions through a SIGTERM and a kill -9 restart
#   scripts/bench.sh logins [ARGS]   # login throughput, timd CPU per login (--perf FILE: perf record)
#   scripts/bench.sh callbacks [ARGS]  # State.StateChange to a local receiver: logins/s callbacks off
#                                    # vs on (ratio), delivery latency p50/p99 from the decision, a
#                                    # backlog of 10,000 logins + logouts drained (events/s)
#   scripts/bench.sh sidebyside [ARGS]  # timd vs a bare axum WebSocket login server, 3 interleaved
#                                    # rounds of 10,000 logins (first-time, returning with the same and
#                                    # with a new UserSig) from --clients 2 processes: logins/s, CPU per
#                                    # login, ratios, client and machine load (--perf DIR)
#   scripts/bench.sh apps [ARGS]     # login throughput and CPU per login, 1 app vs 100 apps (logins
#                                    # spread over them), interleaved rounds (tim-bench apps --help)
#   scripts/bench.sh settings [ARGS] # 3 nodes on Redis, 100 set_login_settings: answer time p50/max,
#                                    # nodes not yet applying a change when it answered (must be 0)
#   scripts/bench.sh cluster [ARGS]  # cluster mode on a Redis of its own (tim-bench cluster --help):
#                                    # cross- vs same-node kicks, logins/s embedded vs 1-3 nodes,
#                                    # 100,000 sessions over 6 nodes + 6 client processes (memory,
#                                    # Redis load, every node restarted by SIGTERM and kill -9);
#                                    # --parts kick,logins,hold  --sessions N  --lease-ms N
#                                    # --persistence none|aof  (about 5 minutes on 2 cores)
#                                    # --parts storm [--sessions 50000]: every node restarted at the
#                                    # same moment (SIGTERM, then kill -9): 5 nodes x 10,000 sessions
#                                    # reconnect in one storm: time until back, dropped/retried SYNs
#   scripts/bench.sh hold [ARGS]     # as many sessions as the machine holds: 300,000 (--sessions N)
#                                    # over 18 nodes on one Redis, held by the lean load generator
#                                    # (18 processes, sources 127.0.0.2-73), then every node
#                                    # restarted in turn (SIGTERM, then kill -9): all back, 0 lost,
#                                    # 0 spurious kicks; memory per session split by where it goes
#                                    # (timd, Redis, kernel both ends, generator), steady Redis and
#                                    # node CPU, Redis commands/s (tim-bench cluster --parts hold --lean)
#   scripts/bench.sh soak [--minutes 5] [ARGS]  # steady churn (logins, logouts, limit and REST kicks,
#                                    # drops+resumes, renewals, bad frames, forged UserSigs) against
#                                    # one timd AND, at the same time, 3 nodes on Redis: a sample a
#                                    # minute, slopes per hour, target/soak/*.{log,csv,svg} (tim-bench soak --help)
#   scripts/bench.sh chaos [--seconds 600] [ARGS]  # invariants under faults: clients, an admin and a
#                                    # ticket thief against 3 nodes on Redis while nodes are killed
#                                    # (-9) and frozen (SIGSTOP), Redis paused and killed, the
#                                    # subscriptions cut; the history checked (tim-bench chaos --help;
#                                    # --break-with flushall shows it flags a loss; --sentinel: Redis
#                                    # behind Sentinel; --redis-cluster: a 3-shard Redis Cluster)
#   scripts/bench.sh browser         # kick delivery between two real tabs, login latency (Chromium, Firefox)
#   scripts/bench.sh coldstart [--runs N]  # page cold start, tim-wasm vs tim-js-sdk 2.27.6 (Chromium, 100 ms, 10 Mbit/s)
#   scripts/bench.sh cycles [--cycles N] [--no-gc]  # SDK create/login/logout|kicked/destroy x1000 per engine: memory, sockets, timers, listeners
#   scripts/bench.sh background [--minutes 10] [--heartbeat-ms MS]  # a page hidden in headed Chromium under intensive throttling: reconnects; a frozen/killed timd noticed
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
[ -f scripts/env.sh ] && . scripts/env.sh
# The SDK cycles need the SDK and the debug timd the e2e tests use, not the release build.
if [ "${1:-}" = cycles ]; then
  shift
  ./scripts/build-pkg.sh
  cargo build -p timd-bin --quiet
  exec node tests/e2e/bench/sdk-cycles.mjs "$@"
fi
# A hidden page in headed Chromium (on Xvfb) against the debug timd the e2e tests use.
if [ "${1:-}" = background ]; then
  shift
  ./scripts/build-pkg.sh
  cargo build -p timd-bin --quiet
  exec node tests/e2e/bench/background.mjs "$@"
fi
# Cold start needs no timd: it runs before the release build.
if [ "${1:-}" = coldstart ]; then
  shift
  ./scripts/build-pkg.sh
  exec node tests/e2e/bench/cold-start.mjs "$@"
fi
cargo build --profile server -p timd-bin -p tim-bench --quiet
bench=target/server/tim-bench
# Each side of 10,000 loopback sockets needs as many descriptors (tim-bench raises its soft
# limit to the hard one too; timd inherits it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The e2e tab test's kick delivery part, against the release timd, printing its figures.
browser() {
  ./scripts/build-pkg.sh
  TIMD_BIN=target/server/timd node --test --test-name-pattern "kick delivery" tests/e2e/tabs.test.mjs \
    | grep -E "^# (chrome|firefox): kick delivery|^# (pass|fail)"
  TIMD_BIN=target/server/timd node --test tests/e2e/bench/login-latency.mjs \
    | grep -E "^# (chrome|firefox): login|^# (pass|fail)"
}

what=${1:-all}
[ $# -gt 0 ] && shift
case "$what" in
  kick) exec "$bench" kick "$@" ;;
  restart) exec "$bench" restart "$@" ;;
  logins) exec "$bench" logins "$@" ;;
  callbacks) exec "$bench" callbacks "$@" ;;
  sidebyside) exec "$bench" sidebyside "$@" ;;
  apps) exec "$bench" apps "$@" ;;
  settings)
    command -v redis-server >/dev/null || { echo "redis-server missing: run scripts/setup.sh" >&2; exit 2; }
    exec "$bench" settings "$@" ;;
  cluster)
    command -v redis-server >/dev/null || { echo "redis-server missing: run scripts/setup.sh" >&2; exit 2; }
    exec "$bench" cluster "$@" ;;
  hold)
    command -v redis-server >/dev/null || { echo "redis-server missing: run scripts/setup.sh" >&2; exit 2; }
    defaults=(--parts hold --lean)
    case " $* " in *" --sessions"*) ;; *) defaults+=(--sessions 300000) ;; esac
    exec "$bench" cluster "${defaults[@]}" "$@" ;;
  chaos)
    command -v redis-server >/dev/null || { echo "redis-server missing: run scripts/setup.sh" >&2; exit 2; }
    exec "$bench" chaos --seconds 600 "$@" ;;
  soak)
    command -v redis-server >/dev/null || { echo "redis-server missing: run scripts/setup.sh" >&2; exit 2; }
    mkdir -p target/soak
    # Both runs at once, each line prefixed with its target; each keeps its own log.
    ("$bench" soak "$@" 2>&1 | tee target/soak/soak-embedded.log | sed -u 's/^/embedded| /') &
    embedded=$!
    ("$bench" soak --cluster "$@" 2>&1 | tee target/soak/soak-cluster.log | sed -u 's/^/cluster | /') &
    cluster=$!
    rc=0
    wait "$embedded" || rc=1
    wait "$cluster" || rc=1
    exit "$rc" ;;
  browser) browser ;;
  all)
    "$bench" kick --kicks 1000
    "$bench" kick --kicks 1000 --pairs 8
    "$bench" restart --sessions 10000
    browser
    ;;
  *) echo "usage: $0 [kick|restart|logins|callbacks|sidebyside|apps|settings|cluster|hold|chaos|soak|browser|coldstart|cycles|background|all] [ARGS]" >&2; exit 2 ;;
esac
