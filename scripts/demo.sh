#!/usr/bin/env bash
# Runs the demo: installs what is missing, builds the npm package into pkg/, then starts timd in
# demo mode (embedded SDKAppID and key, test UserSigs for any user name, loopback only) serving
# www/ and pkg/. The page shows the user's instances across tabs and devices live, the login
# settings, and buttons to open another tab, log in a native device (run inside timd) and
# REST-kick the user. Open the printed URL; Ctrl-C stops it. Extra arguments go to `timd serve`
# (e.g. --web-instances 2 --login-policy single).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
./scripts/setup.sh
. scripts/env.sh
./scripts/build-pkg.sh
cargo build -p timd-bin --quiet   # the debug build the tests share: quicker on a fresh machine
listen=${TIMD_LISTEN:-127.0.0.1:9000}
echo "== demo: open http://$listen/ (Ctrl-C to stop)" >&2
exec target/debug/timd serve --demo --listen "$listen" --data-dir "${TIMD_DATA_DIR:-.data/demo}" "$@"
