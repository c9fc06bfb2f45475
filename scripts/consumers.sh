#!/usr/bin/env bash
# The tarball is the artifact: builds pkg/ (skipped with --no-build, when the caller just built
# it), then tests what npm would deliver (tests/consumers/): `npm pack`, the packaging check
# (scripts/check-package.mjs) and its own tests, and consumer projects created from
# tests/consumers/templates/ that install the tarball (plain page with an import map, a
# <script src> page of the script-tag build, Vite dev server and build, webpack 5, esbuild,
# TypeScript) running the seed sample against timd in Chromium, Firefox and WebKit, and Node and
# Vite SSR projects (ssr.test.mjs).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
. scripts/env.sh
[ "${1:-}" = --no-build ] || ./scripts/build-pkg.sh
cargo build -p timd-bin --quiet
node --test --test-concurrency=1 tests/consumers/
