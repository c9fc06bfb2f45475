//! The process's allocator: mimalloc, told to keep freed memory for a while.
//!
//! glibc's `malloc` served each of the dozen allocations a login keeps from its arena under a
//! lock, outside its thread caches; mimalloc's per-thread free lists do not (docs/benchmarks.md,
//! "The allocator").
//!
//! mimalloc gives memory nobody uses back to the kernel after `purge_delay`, 1 s by default.
//! Sessions arrive in waves (a node restarted, a network back, a morning): the memory the last
//! wave's sessions freed was then handed back between waves, and the next wave took a page
//! fault and a zeroed page for each of it, about one fault per login (`tim-bench sidebyside`
//! prints the faults per login). [`keep_freed_memory`] keeps it [`PURGE_DELAY_MS`] instead.

/// How long memory nobody uses is kept before it goes back to the kernel: longer than the gap
/// between waves of reconnects, short enough that a server past a peak shrinks within a minute.
pub const PURGE_DELAY_MS: i64 = 30_000;

/// mimalloc's `mi_option_purge_delay` (v3 `mimalloc.h`, `mi_option_e`; pinned through
/// `Cargo.lock`: the test below checks that this index is the option the environment sets).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// The environment variables mimalloc reads this option from at start.
const PURGE_DELAY_ENV: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: i32, value: std::ffi::c_long);
}

/// Sets the purge delay to [`PURGE_DELAY_MS`], unless the operator set `MIMALLOC_PURGE_DELAY`
/// (which mimalloc read at start and which then wins).
pub fn keep_freed_memory() {
    if PURGE_DELAY_ENV
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        return;
    }
    // SAFETY: mimalloc's option setters take any option index below its last and any value;
    // the delay is read when a purge is scheduled, so setting it at any time is allowed.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long) };
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        fn mi_option_get(option: i32) -> std::ffi::c_long;
    }

    /// The purge delay in force, in milliseconds.
    fn purge_delay_ms() -> std::ffi::c_long {
        // SAFETY: reads an option; any index below mimalloc's last is valid.
        unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    /// Run in a child process with `MIMALLOC_PURGE_DELAY` set: prints what it finds.
    #[test]
    fn child_reports_the_purge_delay() {
        if std::env::var_os("TIMD_ALLOCATOR_TEST_CHILD").is_none() {
            return;
        }
        keep_freed_memory();
        println!("purge_delay={}", purge_delay_ms());
    }

    fn child(env: Option<&str>) -> std::ffi::c_long {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "allocator::tests::child_reports_the_purge_delay",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TIMD_ALLOCATOR_TEST_CHILD", "1");
        for name in PURGE_DELAY_ENV {
            cmd.env_remove(name);
        }
        if let Some(value) = env {
            cmd.env("MIMALLOC_PURGE_DELAY", value);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // The harness prints the test's name on the same line.
        text.split_once("purge_delay=")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no purge_delay in {text:?}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn the_index_is_the_option_the_environment_sets_and_it_wins() {
        // mimalloc read MIMALLOC_PURGE_DELAY into this index: it is the purge delay, and
        // an operator's setting is kept.
        assert_eq!(child(Some("1234")), 1234);
    }

    #[test]
    fn without_the_environment_freed_memory_is_kept_longer_than_mimallocs_second() {
        assert_eq!(child(None), PURGE_DELAY_MS as std::ffi::c_long);
        const { assert!(PURGE_DELAY_MS > 1_000) };
    }
}
