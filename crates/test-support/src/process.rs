//! Child processes for the fixtures: output to a log file, signals, bounded waits.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Stdout and stderr both appended to `path` (so a restarted process adds to the log).
pub fn log_to(path: &Path) -> (Stdio, Stdio) {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let second = file.try_clone().expect("dup the log file");
    (Stdio::from(file), Stdio::from(second))
}

/// Sends `signal` (`libc::SIGTERM`, `libc::SIGKILL`, `libc::SIGSTOP`, ...) to `child`.
pub fn signal(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) has no memory effects; the child is not reaped yet, so the pid is
    // still ours.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Waits at most `bound` for `child` to exit.
pub fn wait_exit(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL and reap (no-op if it already exited).
pub fn kill9(child: &mut Child) -> ExitStatus {
    if let Some(status) = child.try_wait().expect("wait for a child") {
        return status;
    }
    signal(child, libc::SIGKILL);
    child.wait().expect("reap the killed child")
}

/// The last `lines` lines of the file at `path` (empty if there is none).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Prints the tail of a fixture's log to stderr when the test is failing, so the
/// process's last words end up in the test output.
pub fn print_tail_if_panicking(what: &str, path: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "---- last lines of {what} ({}) ----\n{}\n----",
            path.display(),
            tail(path, 40)
        );
    }
}
