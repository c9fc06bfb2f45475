# Sourced by the scripts: tools installed by scripts/setup.sh come first on PATH.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_root/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# No CHROMEDRIVER/GECKODRIVER here: wasm-bindgen-test-runner prefers GECKODRIVER whenever it is
# set, so exporting both would run "--chrome" in Firefox too. wasm-pack finds both on PATH.
unset _root
