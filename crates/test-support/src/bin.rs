//! Where the `timd` executable is, for the process fixtures.
//!
//! Cargo hands `CARGO_BIN_EXE_timd` only to the tests of the package that owns the binary
//! (`timd-bin`); the server's and the client's tests need it too. So, once per test
//! process, the first of:
//! 1. `$TIMD_BIN` (as for the e2e tests; a relative path is taken from the workspace root);
//! 2. `$CARGO_BIN_EXE_timd` at run time (cargo sets it for `timd-bin`'s own tests);
//! 3. `cargo build -p timd-bin --bin timd` in the profile the running test was built with
//!    (`target/<profile>/timd`; a no-op when it is up to date), and the executable cargo
//!    reports.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The package that holds the `timd` binary.
pub const BIN_PACKAGE: &str = "timd-bin";

/// The `timd` executable (see the module doc for how it is found).
pub fn timd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("TIMD_BIN").filter(|p| !p.is_empty()) {
            return workspace_root().join(path);
        }
        if let Some(path) = std::env::var_os("CARGO_BIN_EXE_timd").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        build()
    })
    .clone()
}

/// The workspace's root directory (this crate is `crates/test-support`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo build -p timd-bin`, in the running test's profile; the binary's path.
fn build() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", BIN_PACKAGE, "--bin", "timd"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(profile) = current_profile() {
        cmd.args(["--profile", &profile]);
    }
    let out = cmd.output().expect("run cargo to build timd");
    assert!(
        out.status.success(),
        "cargo build -p {BIN_PACKAGE} failed ({})",
        out.status
    );
    let exe = out.stdout.lines().map_while(Result::ok).find_map(|line| {
        let msg: serde_json::Value = serde_json::from_str(&line).ok()?;
        let is_timd = msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "timd";
        is_timd.then(|| msg["executable"].as_str().map(PathBuf::from))?
    });
    exe.expect("cargo reports the timd executable")
}

/// The cargo profile the running test executable was built with, from its path
/// (`target/<profile dir>/deps/<test>`): `debug` is the `dev` profile.
fn current_profile() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    let dir = deps.parent()?.file_name()?.to_str()?;
    Some(if dir == "debug" { "dev" } else { dir }.to_owned())
}
