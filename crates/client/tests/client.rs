//! The native client against a real `timd`: the API settles every call, events are those of
//! the JS SDK, a dropped connection resumes, and the `timd client` CLI.

mod common;

use std::time::Duration;

use common::*;
use tim_client::cli::{self, ClientArgs};
use tim_client::{Client, Config, Event, NetState, OpOk, Platform};
use tim_proto::*;
use timd::policy::LoginPolicy;

#[tokio::test]
async fn login_logout_destroy_and_their_events() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let mut c = server.client(Platform::Android, "dev-1");
    assert_eq!(
        c.login("alice", &sig("alice")).await,
        Ok(OpOk::Login { repeat: false })
    );
    assert_eq!(
        drain(&mut c),
        [
            Event::NetState(NetState::Connecting),
            Event::NetState(NetState::Connected),
            Event::Ready
        ]
    );
    assert_eq!(
        server.slots("alice"),
        [("dev-1".to_string(), Platform::Android, true)]
    );
    let status = c.status().await.unwrap();
    assert!(status.ready && status.connected && status.user == "alice");

    assert_eq!(
        c.login("alice", &sig("alice")).await,
        Ok(OpOk::Login { repeat: true })
    );
    assert_eq!(c.logout().await, Ok(OpOk::Logout));
    assert_eq!(drain(&mut c), [Event::NotReady]);
    eventually("logout frees the slot", || {
        server.instances("alice").is_empty()
    })
    .await;
    assert_eq!(c.logout().await.unwrap_err().code, SDK_USER_NOT_LOGGED_IN);

    assert_eq!(c.destroy().await, Ok(OpOk::Destroy));
    for r in [
        c.login("alice", &sig("alice")).await,
        c.logout().await,
        c.destroy().await,
    ] {
        assert_eq!(r.unwrap_err().code, SDK_INVALID_OPERATION);
    }
}

#[tokio::test]
async fn every_platform_logs_in_as_itself() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let mut clients = Vec::new();
    for p in Platform::ALL {
        clients.push(server.online("alice", p, p.as_str()).await);
    }
    let slots = server.slots("alice");
    assert_eq!(slots.len(), 6);
    for (p, (instance, platform, _)) in Platform::ALL.into_iter().zip(slots) {
        assert_eq!((instance.as_str(), platform), (p.as_str(), p));
    }
}

#[tokio::test]
async fn server_refusals_reject_with_the_server_code() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let c = server.client(Platform::Web, "w");
    let wrong_key = tim_usersig::generate(APP, "other-key", "alice", now(), 3600);
    assert_eq!(
        c.login("alice", &wrong_key).await.unwrap_err().code,
        ERR_USERSIG_SIGNATURE
    );
    let expired = tim_usersig::generate(APP, KEY, "alice", now() - 7200, 3600);
    assert_eq!(
        c.login("alice", &expired).await.unwrap_err().code,
        ERR_USERSIG_EXPIRED
    );
    assert_eq!(
        c.login("a b", "x").await.unwrap_err().code,
        SDK_NO_IDENTIFIER
    );
    // And the instance still works afterwards.
    assert!(c.login("alice", &sig("alice")).await.is_ok());
}

#[tokio::test]
async fn a_login_nobody_answers_settles_with_a_network_code() {
    // Accepts TCP but never completes the WebSocket handshake.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut config = Config::new(APP, Platform::Web, "w".into());
    config.login_timeout_ms = 300;
    let c = Client::new(&format!("ws://{addr}"), config);
    let started = std::time::Instant::now();
    let code = c.login("alice", "sig").await.unwrap_err().code;
    assert!(
        [SDK_NETWORK_ERROR, SDK_NETWORK_TIMEOUT].contains(&code),
        "{code}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_dropped_connection_resumes_its_own_slot_with_only_net_state_events() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let mut c = server.online("alice", Platform::Web, "tab").await;
    let before = server.state.registry().instances("alice");
    c.drop_connection();
    let seen = reconnected(&mut c, Duration::from_secs(5)).await;
    assert_eq!(
        seen,
        [
            Event::NetState(NetState::Connecting),
            Event::NetState(NetState::Connected)
        ]
    );
    let after = server.state.registry().instances("alice");
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].since_ms, before[0].since_ms,
        "the same slot, resumed"
    );
    assert!(after[0].attached);
    assert_eq!(server.state.registry().online_count(), 1);
}

/// `round_trip` is a barrier: when it returns, every frame the server sent before its `pong`
/// has been handled and its events are queued; without a connection it fails at once.
#[tokio::test]
async fn a_round_trip_brings_in_everything_sent_before_it() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let mut old = server.online("alice", Platform::Web, "old").await;
    assert!(old.round_trip().await, "a live connection answers");
    assert_eq!(drain(&mut old), [], "a pong is no event");
    // The newcomer's login answers after the old one's kick is sent: a round trip of the
    // old one, begun after that, finds its socket closed by the kick, and the kick handled.
    let newer = server.online("alice", Platform::Web, "new").await;
    assert!(!old.round_trip().await, "the kick closed the connection");
    assert_eq!(
        drain(&mut old),
        [Event::Kicked(KickReason::MultipleAccount), Event::NotReady]
    );
    assert!(!old.round_trip().await, "no connection: fails at once");
    assert!(newer.round_trip().await);
    // Many at once, beside the session's own pings: each is answered.
    let trips = futures_util::future::join_all((0..20).map(|_| newer.round_trip())).await;
    assert!(trips.iter().all(|t| *t), "{trips:?}");
}

#[tokio::test]
async fn dropping_the_client_logs_out() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let c = server.online("alice", Platform::Web, "tab").await;
    let (handle, events) = c.split();
    let clone = handle.clone();
    drop(handle);
    drop(events);
    // The task goes on: a round trip through it and the server (a logout it had sent would
    // have been answered before the pong).
    assert!(clone.round_trip().await, "the connection is still up");
    assert_eq!(
        server.instances("alice"),
        ["tab"],
        "a handle is left: still online"
    );
    drop(clone);
    eventually("the last handle logs out", || {
        server.instances("alice").is_empty()
    })
    .await;
}

fn args(server: &Server, platform: &str, user: &str, instance: &str) -> ClientArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ClientArgs,
    }
    let url = server.url();
    let app = APP.to_string();
    Cli::parse_from([
        "client",
        "--url",
        &url,
        "--sdkappid",
        &app,
        "--platform",
        platform,
        "--user",
        user,
        "--key",
        KEY,
        "--instance",
        instance,
    ])
    .args
}

#[tokio::test]
async fn cli_prints_events_until_kicked() {
    let server = Server::start(settings(LoginPolicy::Single, 1, 1)).await;
    let mut out = Vec::new();
    let cli = cli::run(
        args(&server, "android", "bob", "phone"),
        std::future::pending(),
        &mut out,
    );
    let other = async {
        eventually("the CLI logged in", || server.instances("bob") == ["phone"]).await;
        server.online("bob", Platform::Web, "tab").await
    };
    let (code, _tab) = tokio::join!(cli, other);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, cli::EXIT_KICKED, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("client Android bob instance phone -> ws://"),
        "{out}"
    );
    assert_eq!(
        lines[1..],
        [
            "event netStateChange connecting",
            "event netStateChange connected",
            "event sdkStateReady",
            "login ok",
            "event kickedOut multipleDevice",
        ],
        "{out}"
    );
}

#[tokio::test]
async fn cli_logs_out_on_stop() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let mut out = Vec::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cli = cli::run(
        args(&server, "Mac", "carol", "mac-1"),
        async {
            let _ = stopped.await;
        },
        &mut out,
    );
    let driver = async {
        eventually("the CLI logged in", || {
            server.instances("carol") == ["mac-1"]
        })
        .await;
        stop.send(()).unwrap();
    };
    let (code, ()) = tokio::join!(cli, driver);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("logout ok\nevent sdkStateNotReady\n"),
        "{out}"
    );
    assert!(server.instances("carol").is_empty());
}

#[tokio::test]
async fn cli_reports_a_failed_login() {
    let server = Server::start(settings(LoginPolicy::All, 1, 1)).await;
    let mut a = args(&server, "Web", "dave", "w");
    a.key = Some("wrong-key".into());
    let mut out = Vec::new();
    let code = cli::run(a, std::future::pending(), &mut out).await;
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 1);
    assert!(out.contains("login failed 70009 "), "{out}");
}
