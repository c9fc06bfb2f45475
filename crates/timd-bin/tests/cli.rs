//! The `timd` executable itself: each subcommand reaches its library, with the exit codes
//! and messages scripts rely on (0 ok, 2 bad usage, 3 kicked out for `timd client`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tim_test_support::{TimdNode, APP, KEY};

const TIMD: &str = env!("CARGO_BIN_EXE_timd");

fn timd(args: &[&str]) -> Output {
    Command::new(TIMD)
        .args(args)
        .env_remove("TIMD_KEY")
        .env_remove("TIMD_SDKAPPID")
        .output()
        .expect("run timd")
}

#[test]
fn usersig_prints_a_verifiable_usersig_and_refuses_bad_input_with_2() {
    let out = Command::new(TIMD)
        .args(["usersig", "--sdkappid", "1400000001", "--user", "alice"])
        .env("TIMD_KEY", "k")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sig = String::from_utf8(out.stdout).unwrap();
    let now = tim_test_support::now();
    let claims = tim_usersig::verify(sig.trim_end(), "k", 1400000001, "alice", now).unwrap();
    assert_eq!(claims.expire, 15_552_000);

    let out = timd(&[
        "usersig",
        "--sdkappid",
        "1",
        "--key",
        "k",
        "--user",
        "no spaces",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("timd usersig: "));
}

/// A Redis password on the command line gets a warning, and no message shows it (a URL
/// without `://` included).
#[test]
fn serve_warns_about_a_redis_password_in_argv_and_never_prints_it() {
    for url in ["redis://:s3cret@127.0.0.1:1", "u:s3cret@127.0.0.1:1"] {
        let out = Command::new(TIMD)
            .args(["serve", "--redis", url])
            .env("TIMD_SDKAPPID", "1400000001")
            .env("TIMD_KEY", "k")
            .env_remove("TIMD_REDIS")
            .output()
            .expect("run timd");
        // A refused config (2), or no Redis there (1).
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--redis with a password on the command line is visible"),
            "{stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[test]
fn serve_refuses_a_bad_config_with_2_and_warns_about_a_key_in_argv() {
    let out = timd(&["serve", "--key", "k"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--key on the command line is visible"),
        "{stderr}"
    );
    assert!(
        stderr.contains("timd serve: --sdkappid is required"),
        "{stderr}"
    );
    // Unknown subcommands and flags: clap's usage error, also 2.
    assert_eq!(timd(&["nope"]).status.code(), Some(2));
    assert_eq!(timd(&["serve", "--nope"]).status.code(), Some(2));
    let help = String::from_utf8(timd(&["--help"]).stdout).unwrap();
    for sub in ["serve", "usersig", "client"] {
        assert!(help.contains(sub), "{help}");
    }
}

/// A child process killed when dropped, so a failing test leaves none behind (a live
/// child holding the test's output open would keep cargo waiting).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `timd client` logging in as Android, its stdout lines on a channel.
fn client(node: &TimdNode, instance: &str) -> (Killed, mpsc::Receiver<String>) {
    let mut child = Command::new(TIMD)
        .args(["client", "--platform", "Android", "--user", "bob"])
        .args(["--url", &node.url(), "--instance", instance])
        .env("TIMD_SDKAPPID", APP.to_string())
        .env("TIMD_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Killed(child), rx)
}

/// Lines until one equal to `last` (fails after 10 s).
fn lines_until(rx: &mpsc::Receiver<String>, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(last) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no {last:?} ({e}); saw {seen:?}"),
        }
    }
    seen
}

/// The exit code, within 10 s.
fn exit_code(child: &mut Killed) -> Option<i32> {
    for _ in 0..500 {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timd client did not exit");
}

#[test]
fn client_is_kicked_with_3_and_logs_out_on_ctrl_c_with_0() {
    let node = TimdNode::builder().bin(TIMD).start();
    let (mut first, first_out) = client(&node, "phone-1");
    let seen = lines_until(&first_out, "login ok");
    assert!(
        seen[0].starts_with("client Android bob instance phone-1 -> ws://"),
        "{seen:?}"
    );

    // One Android instance per user by default: the second kicks the first.
    let (mut second, second_out) = client(&node, "phone-2");
    lines_until(&second_out, "login ok");
    let seen = lines_until(&first_out, "event kickedOut multipleAccount");
    assert_eq!(
        seen,
        ["event kickedOut multipleAccount"],
        "the kick comes next"
    );
    assert_eq!(exit_code(&mut first), Some(3));

    let pid = libc::pid_t::try_from(second.0.id()).unwrap();
    // SAFETY: kill(2) on our own child, not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert_eq!(exit_code(&mut second), Some(0), "Ctrl-C logs out cleanly");
}

#[test]
fn the_fixtures_find_this_binary() {
    let found = tim_test_support::timd_bin().canonicalize().unwrap();
    assert_eq!(found, std::path::Path::new(TIMD).canonicalize().unwrap());
}

/// `--apps FILE`: a bad file is refused at start (exit 2) with the file, the app and the
/// field named; a good one serves every app it lists, each with its own key and admins.
#[test]
fn serve_takes_an_apps_file_and_refuses_a_bad_one_naming_app_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.key"), "key-of-a\n").unwrap();
    let file = dir.path().join("apps.toml");
    std::fs::write(
        &file,
        "[[app]]\nsdkappid = 1400000101\nkey_file = \"a.key\"\n\n\
         [[app]]\nsdkappid = 1400000102\nkey_file = \"a.key\"\nweb_instances = 12\n",
    )
    .unwrap();
    let out = timd(&["serve", "--apps", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apps.toml")
            && stderr.contains("app #2 (sdkappid 1400000102)")
            && stderr.contains("field web_instances"),
        "{stderr}"
    );
    let out = timd(&["serve", "--apps", file.to_str().unwrap(), "--sdkappid", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--apps names every app"));

    std::fs::write(
        &file,
        format!(
            "[[app]]\nsdkappid = {APP}\nkey_env = \"TIMD_TEST_APP_KEY\"\n\n\
             [[app]]\nsdkappid = 1400000102\nkey_file = \"a.key\"\nadmins = [\"ops\"]\n"
        ),
    )
    .unwrap();
    let node = TimdNode::builder()
        .app(0, "")
        .arg("--apps")
        .arg(file.as_os_str())
        .env("TIMD_TEST_APP_KEY", KEY)
        .start();
    for (sdkappid, key, admin) in [(APP, KEY, "administrator"), (1400000102, "key-of-a", "ops")] {
        let sig = tim_usersig::generate(sdkappid, key, admin, tim_test_support::now(), 600);
        let path = format!(
            "/v4/timd/get_login_settings?sdkappid={sdkappid}&identifier={admin}&usersig={sig}&random=1&contenttype=json"
        );
        let (status, answer) =
            tim_test_support::http::post(node.addr(), &path, "{}", Duration::from_secs(5))
                .expect("an answer");
        assert_eq!(status, 200);
        assert!(answer.contains("\"ErrorCode\":0"), "{sdkappid}: {answer}");
        // The other app's admin is not this app's admin.
        let other = if sdkappid == APP {
            "ops"
        } else {
            "administrator"
        };
        let sig = tim_usersig::generate(sdkappid, key, other, tim_test_support::now(), 600);
        let path = format!(
            "/v4/timd/get_login_settings?sdkappid={sdkappid}&identifier={other}&usersig={sig}&random=1&contenttype=json"
        );
        let (_, answer) =
            tim_test_support::http::post(node.addr(), &path, "{}", Duration::from_secs(5))
                .expect("an answer");
        assert!(
            answer.contains("\"ErrorCode\":70403"),
            "{sdkappid}: {answer}"
        );
    }
}

/// SIGTERM as soon as `timd serve` says it listens: a graceful stop (exit 0), never the
/// signal's default action (its handler is installed before the listener opens).
#[test]
fn sigterm_right_after_listening_is_a_clean_stop() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(TIMD)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("TIMD_SDKAPPID", APP.to_string())
            .env("TIMD_KEY", KEY)
            .env("TIMD_DATA_DIR", dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("timd listening") {
            line.clear();
            assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "timd exited");
        }
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child, not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        // Drained so the process never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let mut child = Killed(child);
        assert_eq!(exit_code(&mut child), Some(0), "a clean stop");
    }
}
