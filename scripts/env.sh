# Sourced by the scripts: tools installed by scripts/setup.sh come first on PATH.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_root/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# No CHROMEDRIVER/GECKODRIVER here: wasm-bindgen-test-runner prefers GECKODRIVER whenever it is
# set, so exporting both would run "--chrome" in Firefox too. wasm-pack finds both on PATH.
# The toolchain of the published package build (scripts/build-pkg.sh): a pinned nightly, to
# build std with panic = "immediate-abort" (no panic messages or formatting in the wasm).
export TIM_PKG_TOOLCHAIN=nightly-2026-10-30
unset _root
