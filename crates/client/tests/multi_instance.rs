//! Multi-instance and multi-device login over real sockets, with native clients playing
//! every platform against a real `timd`: the policy table, instance limits, racing logins,
//! resume after a kick or a replacement, reconnects that kick no one, and no kick loops.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tim_client::{Client, Config, Event, KickReason, NetState, Platform};
use timd::policy::LoginPolicy;

use Platform::*;

/// Platforms in the order of the tables below.
const PLATFORMS: [Platform; 6] = [Web, Android, IPhone, IPad, Windows, Mac];

/// Who gets `KICKED_OUT` when an instance on platform *column* logs in while one on
/// platform *row* is online, with one instance allowed per platform. Written out by hand
/// from REFERENCE.md "Login settings": `A` the existing one is kicked with
/// `multipleAccount`, `D` with `multipleDevice`, `.` nobody is kicked. The newcomer is never
/// kicked.
///
/// Columns: Web Android iPhone iPad Windows Mac.
const TABLES: [(LoginPolicy, [&str; 6]); 4] = [
    // 1. single platform: only one of Android / iPhone / iPad / Windows / Mac / Web online.
    (
        LoginPolicy::Single,
        [
            "A D D D D D", // Web
            "D A D D D D", // Android
            "D D A D D D", // iPhone
            "D D D A D D", // iPad
            "D D D D A D", // Windows
            "D D D D D A", // Mac
        ],
    ),
    // 2. dual platform: one mobile-or-desktop device, plus Web.
    (
        LoginPolicy::Dual,
        [
            "A . . . . .",
            ". A D D D D",
            ". D A D D D",
            ". D D A D D",
            ". D D D A D",
            ". D D D D A",
        ],
    ),
    // 3. three platforms: one mobile (Android / iPhone / iPad), one desktop (Windows /
    //    Mac), plus Web.
    (
        LoginPolicy::Triple,
        [
            "A . . . . .",
            ". A D D . .",
            ". D A D . .",
            ". D D A . .",
            ". . . . A D",
            ". . . . D A",
        ],
    ),
    // 4. all platforms at once.
    (
        LoginPolicy::All,
        [
            "A . . . . .",
            ". A . . . .",
            ". . A . . .",
            ". . . A . .",
            ". . . . A .",
            ". . . . . A",
        ],
    ),
];

fn expected(cell: &str) -> Option<KickReason> {
    match cell {
        "A" => Some(KickReason::MultipleAccount),
        "D" => Some(KickReason::MultipleDevice),
        "." => None,
        other => panic!("bad table cell {other:?}"),
    }
}

/// Every policy × existing platform × new platform, each pair a different user, all pairs
/// of one policy at once on one server.
#[tokio::test]
async fn policy_table_every_platform_pair() {
    for (policy, rows) in TABLES {
        let server = Server::start(settings(policy, 1, 1)).await;
        let mut cases = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells.len(), 6);
            for (c, cell) in cells.into_iter().enumerate() {
                let (existing, new) = (PLATFORMS[r], PLATFORMS[c]);
                let user = format!("u-{}-{}", existing.as_str(), new.as_str());
                let old = server.online(&user, existing, "old").await;
                let newer = server.online(&user, new, "new").await;
                cases.push((existing, new, expected(cell), user, old, newer));
            }
        }
        // Kicks first (each within the wait bound), then a round trip on every socket for
        // everything else: a wrong kick was decided before the newcomer's login answered.
        for (existing, new, want, _, old, _) in &mut cases {
            if want.is_some() {
                assert_eq!(
                    kicked(old).await,
                    *want,
                    "{policy}: {existing:?} then {new:?}"
                );
            }
        }
        for (existing, new, want, user, old, newer) in &mut cases {
            let what = format!("{policy}: {existing:?} then {new:?}");
            assert_eq!(
                settled(old).await,
                [],
                "{what}: old kicked twice or unexpectedly"
            );
            assert_eq!(
                settled(newer).await,
                [],
                "{what}: the newcomer is untouched"
            );
            let mut want_slots = vec![];
            if want.is_none() {
                want_slots.push("old".to_string());
            }
            want_slots.push("new".to_string());
            assert_eq!(server.instances(user), want_slots, "{what}");
            assert_eq!(old.status().await.unwrap().ready, want.is_none(), "{what}");
        }
    }
}

/// Several platforms online at once: only the conflicting ones go.
/// (policy, Web limit, online in login order, newcomer, who is kicked and why).
type Case = (
    LoginPolicy,
    u8,
    &'static [Platform],
    Platform,
    &'static [(usize, KickReason)],
);

#[tokio::test]
async fn policy_with_several_instances_online() {
    use KickReason::{MultipleAccount as Acct, MultipleDevice as Dev};
    // (policy, Web limit, online in login order, newcomer, who is kicked and why)
    let cases: [Case; 6] = [
        (
            LoginPolicy::Triple,
            1,
            &[Web, Android, Windows],
            IPhone,
            &[(1, Dev)],
        ),
        (
            LoginPolicy::Triple,
            1,
            &[Web, IPad, Mac],
            Windows,
            &[(2, Dev)],
        ),
        (LoginPolicy::Dual, 1, &[Web, Mac], Android, &[(1, Dev)]),
        (
            LoginPolicy::Dual,
            2,
            &[Web, Android, Web],
            Web,
            &[(0, Acct)],
        ),
        (
            LoginPolicy::Single,
            2,
            &[Web, Web],
            Android,
            &[(0, Dev), (1, Dev)],
        ),
        (
            LoginPolicy::All,
            1,
            &[Web, Android, IPhone, IPad, Windows, Mac],
            Web,
            &[(0, Acct)],
        ),
    ];
    for (policy, web, online, new, want) in cases {
        let what = format!("{policy} web {web}: {online:?} + {new:?}");
        let server = Server::start(settings(policy, web, 1)).await;
        let mut clients = Vec::new();
        for (i, p) in online.iter().enumerate() {
            clients.push(server.online("alice", *p, &format!("c{i}")).await);
        }
        let mut newcomer = server.online("alice", new, "newcomer").await;
        for &(i, reason) in want {
            assert_eq!(kicked(&mut clients[i]).await, Some(reason), "{what}: c{i}");
        }
        for c in &mut clients {
            let events = settled(c).await;
            assert_eq!(events, [], "{what}: {}", c.instance());
        }
        assert_eq!(settled(&mut newcomer).await, [], "{what}");
        let mut expect: Vec<String> = (0..online.len())
            .filter(|i| !want.iter().any(|(k, _)| k == i))
            .map(|i| format!("c{i}"))
            .collect();
        expect.push("newcomer".into());
        assert_eq!(server.instances("alice"), expect, "{what}");
    }
}

/// Limits 1..max, for Web (10) and Android (3): at the limit, each new login kicks the
/// earliest on that platform with `multipleAccount`; nobody else is touched (neither the
/// other instances of the platform nor instances on other platforms).
#[tokio::test]
async fn instance_limits_kick_the_earliest_only() {
    for (platform, max) in [(Web, 10u8), (Android, 3)] {
        for limit in 1..=max {
            let (web, other) = if platform == Web {
                (limit, 1)
            } else {
                (1, limit)
            };
            let server = Server::start(settings(LoginPolicy::All, web, other)).await;
            let bystander_platform = if platform == Web { Mac } else { Web };
            let mut bystander = server
                .online("alice", bystander_platform, "bystander")
                .await;
            let mut clients: Vec<Client> = Vec::new();
            for i in 0..limit {
                clients.push(server.online("alice", platform, &format!("i{i}")).await);
            }
            // Two more logins: each kicks the earliest remaining one.
            for extra in 0..2usize {
                let name = format!("x{extra}");
                let newcomer = server.online("alice", platform, &name).await;
                let what = format!("{platform:?} limit {limit}, extra {extra}");
                assert_eq!(
                    kicked(&mut clients[extra]).await,
                    Some(KickReason::MultipleAccount),
                    "{what}"
                );
                clients.push(newcomer);
                let mut want: Vec<String> = vec!["bystander".into()];
                want.extend(
                    clients[extra + 1..]
                        .iter()
                        .map(|c| c.instance().to_string()),
                );
                let mut got = server.instances("alice");
                got.sort_by_key(|i| i != "bystander");
                assert_eq!(got, want, "{what}");
            }
            for (i, c) in clients.iter_mut().enumerate() {
                let events = settled(c).await;
                assert_eq!(events, [], "{platform:?} limit {limit}: {i} touched");
            }
            assert_eq!(settled(&mut bystander).await, [], "bystander untouched");
        }
    }
}

/// 20 clients of one user log in at once with a Web limit of 2: exactly 2 stay online, each
/// of the 18 others got exactly one `KICKED_OUT` (`multipleAccount`), nobody twice.
#[tokio::test]
async fn racing_logins_end_with_exactly_the_limit_online() {
    for limit in [1u8, 2, 5] {
        let server = Server::start(settings(LoginPolicy::Dual, limit, 1)).await;
        let mut clients: Vec<Client> = (0..20)
            .map(|i| server.client(Web, &format!("r{i}")))
            .collect();
        let usersig = sig("racer");
        let results =
            futures_util::future::join_all(clients.iter().map(|c| c.login("racer", &usersig)))
                .await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        // Every login has answered, so every kick is decided: a round trip on each socket
        // brings in whatever was sent to it.
        let mut kicks: HashMap<String, Vec<KickReason>> = HashMap::new();
        let mut ready = Vec::new();
        for c in &mut clients {
            let k: Vec<KickReason> = settled(c)
                .await
                .into_iter()
                .filter_map(|e| match e {
                    Event::Kicked(r) => Some(r),
                    _ => None,
                })
                .collect();
            if c.status().await.unwrap().ready {
                ready.push(c.instance().to_string());
                assert!(k.is_empty(), "{} online yet kicked {k:?}", c.instance());
            } else {
                assert_eq!(
                    k,
                    [KickReason::MultipleAccount],
                    "{} kicked once",
                    c.instance()
                );
            }
            kicks.insert(c.instance().to_string(), k);
        }
        assert_eq!(
            ready.len(),
            usize::from(limit),
            "limit {limit}: online {ready:?}"
        );
        let mut online = server.instances("racer");
        online.sort();
        ready.sort();
        assert_eq!(online, ready, "the server and the clients agree");
        assert_eq!(server.state.registry().online_count(), usize::from(limit));
    }
}

/// Kicked while away (no connection): on its way back the resume learns the kick, with its
/// type, and the newer instance is untouched.
#[tokio::test]
async fn resume_after_being_kicked_while_away() {
    for (policy, old_platform, new_platform, reason) in [
        (LoginPolicy::Dual, Web, Web, KickReason::MultipleAccount),
        (
            LoginPolicy::Single,
            Web,
            Android,
            KickReason::MultipleDevice,
        ),
        (
            LoginPolicy::Triple,
            IPhone,
            Android,
            KickReason::MultipleDevice,
        ),
    ] {
        let server = Server::start(settings(policy, 1, 1)).await;
        let mut old = server.online("alice", old_platform, "old").await;
        old.offline();
        eventually("the server sees the old instance away", || {
            server.slots("alice") == [("old".to_string(), old_platform, false)]
        })
        .await;
        assert_eq!(drain(&mut old), [Event::NetState(NetState::Disconnected)]);
        let mut newer = server.online("alice", new_platform, "new").await;
        assert_eq!(server.instances("alice"), ["new"]);
        old.online();
        assert_eq!(kicked(&mut old).await, Some(reason), "{policy}");
        let events = settled(&mut old).await;
        assert_eq!(events, [], "{policy}: nothing after the kick");
        let status = old.status().await.unwrap();
        assert!(!status.ready && status.kicked == Some(reason));
        assert_eq!(
            server.instances("alice"),
            ["new"],
            "{policy}: the slot is not taken back"
        );
        assert_eq!(
            settled(&mut newer).await,
            [],
            "{policy}: the newer instance is untouched"
        );
        assert!(newer.status().await.unwrap().connected);
    }
}

/// The same instance id logged in again (a reloaded page, a restarted app) while the old
/// session was away: the old one's ticket is stale. When it comes back it must not take
/// the slot back from the newer login, and neither may kick the other in a loop.
#[tokio::test]
async fn resume_after_being_replaced_does_not_take_the_slot_back() {
    let server = Server::start(settings(LoginPolicy::Dual, 1, 1)).await;
    let mut old = server.online("alice", Web, "tab").await;
    old.offline();
    eventually("away", || {
        server.slots("alice") == [("tab".to_string(), Web, false)]
    })
    .await;
    let mut newer = server.online("alice", Web, "tab").await;
    let since = server.state.registry().instances("alice")[0].since_ms;
    old.online();
    // Its resume is refused as a kicked one is (docs/security.md), so it steps aside.
    assert_eq!(kicked(&mut old).await, Some(KickReason::MultipleAccount));
    assert_eq!(settled(&mut old).await, [], "nothing after the kick");
    assert!(!old.status().await.unwrap().ready, "the stale session ends");
    assert_eq!(
        settled(&mut newer).await,
        [],
        "the newer login is untouched"
    );
    let now = server.state.registry().instances("alice");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].since_ms, since, "the newer login keeps its slot");
}

/// What happens today when a replaced instance comes back: it logs in again with its kept
/// UserSig and the newer session on the same instance id steps aside. No loop: one step.
#[tokio::test]
async fn resume_after_being_replaced_settles_without_a_loop() {
    let server = Server::start(settings(LoginPolicy::Dual, 1, 1)).await;
    let mut old = server.online("alice", Web, "tab").await;
    old.offline();
    eventually("away", || {
        server.slots("alice") == [("tab".to_string(), Web, false)]
    })
    .await;
    let mut newer = server.online("alice", Web, "tab").await;
    old.online();
    // The old one's return ends one way or the other: it steps aside (kicked), or it is
    // back (and then the newer one was kicked before its answer went out).
    let back = old
        .wait_for(WAIT, |e| {
            matches!(e, Event::Kicked(_) | Event::NetState(NetState::Connected))
        })
        .await
        .expect("the old instance's return settles");
    let mut old_events = vec![back];
    old_events.extend(settled(&mut old).await);
    let newer_events = settled(&mut newer).await;
    let old_ready = old.status().await.unwrap().ready;
    let newer_ready = newer.status().await.unwrap().ready;
    assert!(
        old_ready ^ newer_ready,
        "exactly one of them online: old {old_ready}, newer {newer_ready}"
    );
    assert_eq!(server.instances("alice"), ["tab"]);
    let kicks = |events: Vec<Event>| {
        events
            .into_iter()
            .filter(|e| matches!(e, Event::Kicked(_)))
            .count()
    };
    assert!(
        kicks(old_events) + kicks(newer_events) <= 1,
        "at most one step aside"
    );
}

/// A reconnect resumes the instance's own slot: no one is kicked, the count stays the
/// same, and the page sees only `NET_STATE_CHANGE` (invariant 4).
#[tokio::test]
async fn a_reconnect_resumes_its_own_slot_and_kicks_no_one() {
    let server = Server::start(settings(LoginPolicy::Single, 2, 1)).await;
    let mut a = server.online("alice", Web, "a").await;
    let mut b = server.online("alice", Web, "b").await;
    let before = server.state.registry().instances("alice");
    for round in 0..3 {
        a.drop_connection();
        let seen = reconnected(&mut a, Duration::from_secs(5)).await;
        assert_eq!(
            seen,
            [
                Event::NetState(NetState::Connecting),
                Event::NetState(NetState::Connected)
            ],
            "round {round}"
        );
        let after = server.state.registry().instances("alice");
        assert_eq!(after.len(), 2, "round {round}: counted once");
        assert_eq!(
            after
                .iter()
                .map(|i| (&i.instance, i.since_ms))
                .collect::<Vec<_>>(),
            before
                .iter()
                .map(|i| (&i.instance, i.since_ms))
                .collect::<Vec<_>>(),
            "round {round}: the same slots, in the same order"
        );
        assert!(after.iter().all(|i| i.attached));
        assert_eq!(server.state.registry().online_count(), 2);
    }
    // Offline for a while, then back.
    b.offline();
    eventually("the server sees b away", || {
        server.slots("alice") == [("a".into(), Web, true), ("b".into(), Web, false)]
    })
    .await;
    b.online();
    let seen = reconnected(&mut b, Duration::from_secs(5)).await;
    assert_eq!(
        seen,
        [
            Event::NetState(NetState::Disconnected),
            Event::NetState(NetState::Connecting),
            Event::NetState(NetState::Connected)
        ]
    );
    assert_eq!(settled(&mut a).await, [], "a untouched by b's reconnect");
    assert_eq!(server.instances("alice"), ["a", "b"]);
}

/// A server restart: every client resumes, nobody is kicked, nobody sees SDK_NOT_READY.
#[tokio::test]
async fn a_server_restart_resumes_everyone() {
    let mut server = Server::start(settings(LoginPolicy::Dual, 2, 1)).await;
    let mut clients: Vec<Client> = Vec::new();
    // Groups of three instances of one user that fit together: Web, Web, one device.
    for i in 0..10 {
        let user = format!("user{}", i / 3);
        let platform = if i % 3 < 2 {
            Web
        } else {
            PLATFORMS[1 + (i / 3) % 5]
        };
        clients.push(server.online(&user, platform, &format!("c{i}")).await);
    }
    for c in &mut clients {
        assert_eq!(
            settled(c).await,
            [],
            "{}: the setup kicks nobody",
            c.instance()
        );
    }
    server.restart().await;
    for c in &mut clients {
        let seen = reconnected(c, Duration::from_secs(10)).await;
        assert!(
            seen.iter().all(|e| matches!(e, Event::NetState(_))),
            "{}: {seen:?}",
            c.instance()
        );
    }
    assert_eq!(server.state.registry().online_count(), 10);
    for c in &mut clients {
        assert_eq!(settled(c).await, [], "{}", c.instance());
        assert!(c.status().await.unwrap().connected);
    }
}

/// A kicked instance never reconnects nor logs in by itself, however long it waits.
#[tokio::test]
async fn a_kicked_instance_stays_out() {
    let server = Server::start(settings(LoginPolicy::Dual, 1, 1)).await;
    let mut config = Config::new(APP, Web, "old".into());
    // Short backoff: several reconnect periods fit in the observation window.
    config.reconnect_min_ms = 50;
    config.reconnect_max_ms = 200;
    let mut old = Client::new(&server.url(), config);
    old.login("alice", &sig("alice")).await.unwrap();
    drain(&mut old);
    let mut newer = server.online("alice", Web, "new").await;
    assert_eq!(kicked(&mut old).await, Some(KickReason::MultipleAccount));
    eventually("the kicked socket is closed", || {
        server.state.sockets().len() == 1
    })
    .await;
    let since = server.state.registry().instances("alice")[0].since_ms;
    // Watch the server's sockets for 1.5 s (many backoff periods): only the newer one.
    let mut max_sockets = 0;
    let end = tokio::time::Instant::now() + Duration::from_millis(1_500);
    while tokio::time::Instant::now() < end {
        max_sockets = max_sockets.max(server.state.sockets().len());
        old.online(); // neither the network coming back
        old.wake(); // nor a wake-up brings it back
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        max_sockets, 1,
        "no connection attempt from the kicked instance"
    );
    assert_eq!(drain(&mut old), [], "no event after the kick");
    assert!(!old.status().await.unwrap().ready);
    let now = server.state.registry().instances("alice");
    assert_eq!(
        (now.len(), now[0].instance.as_str(), now[0].since_ms),
        (1, "new", since)
    );
    assert_eq!(drain(&mut newer), []);
}

/// Two clients, limit 1, both calling `login` over and over for a few seconds (as two
/// pages whose code logs in again whenever it is kicked): kicks are bounded by the logins
/// that actually went out, and exactly one is online at the end.
#[tokio::test]
async fn two_clients_logging_in_repeatedly_end_with_exactly_one_online() {
    let server = Server::start(settings(LoginPolicy::Dual, 1, 1)).await;
    let usersig = sig("alice");
    let run = Duration::from_secs(3);
    let period = Duration::from_millis(20);
    let player = |name: &'static str| {
        let mut c = server.client(Web, name);
        let usersig = usersig.clone();
        async move {
            let end = tokio::time::Instant::now() + run;
            let (mut calls, mut fresh, mut kicks) = (0u32, 0u32, 0u32);
            while tokio::time::Instant::now() < end {
                calls += 1;
                if let Ok(tim_client::OpOk::Login { repeat: false }) =
                    c.login("alice", &usersig).await
                {
                    fresh += 1;
                }
                tokio::time::sleep(period).await;
                kicks += drain(&mut c)
                    .iter()
                    .filter(|e| matches!(e, Event::Kicked(_)))
                    .count() as u32;
            }
            (c, calls, fresh, kicks)
        }
    };
    let ((mut a, a_calls, a_fresh, a_kicks), (mut b, b_calls, b_fresh, b_kicks)) =
        tokio::join!(player("a"), player("b"));
    // Every login has answered: a round trip on each socket brings in the last kicks.
    let a_kicks = a_kicks
        + settled(&mut a)
            .await
            .iter()
            .filter(|e| matches!(e, Event::Kicked(_)))
            .count() as u32;
    let b_kicks = b_kicks
        + settled(&mut b)
            .await
            .iter()
            .filter(|e| matches!(e, Event::Kicked(_)))
            .count() as u32;
    let kicks = a_kicks + b_kicks;
    println!(
        "two clients, limit 1, login every {period:?} for {run:?}: calls {a_calls}+{b_calls}, \
         fresh logins {a_fresh}+{b_fresh}, kicks {a_kicks}+{b_kicks} = {kicks}"
    );
    let ready = [
        a.status().await.unwrap().ready,
        b.status().await.unwrap().ready,
    ];
    assert_eq!(
        ready.iter().filter(|r| **r).count(),
        1,
        "exactly one online: {ready:?}"
    );
    assert_eq!(server.state.registry().online_count(), 1);
    // Every kick was caused by a fresh login of the other one (the first login kicks none).
    assert!(
        kicks < a_fresh + b_fresh,
        "kicks {kicks} bounded by fresh logins"
    );
    assert!(a_kicks <= b_fresh && b_kicks <= a_fresh);
    let bound = 2 * (run.as_millis() / period.as_millis()) as u32;
    assert!(kicks <= bound, "{kicks} kicks > {bound}");
}

/// Kick delivery is not held back by Nagle's algorithm: with it, the `kicked` frame waits
/// for the ACK of the previous frame, which the client delays by up to 40 ms (a mean of
/// ~20 ms over many kicks), so most kicks would reach the old instance tens of milliseconds
/// after the newcomer's `login_ok` (sent right after the kick, on a fresh connection).
/// Measured between those two arrivals, the login's own work is left out; the median is
/// checked, as a busy machine stalls some rounds, never most of them. `tim-bench kick`
/// measures the real figure.
#[tokio::test]
async fn kicks_arrive_without_a_delayed_ack_wait() {
    // 30 logins of one user in a burst: not what the per-user login rate is about.
    let server = Server::start(|c| {
        settings(LoginPolicy::Dual, 1, 1)(c);
        c.limits.login_rate_per_user = 0;
    })
    .await;
    let usersig = sig("alice");
    let mut a = server.client(Web, "a");
    let mut b = server.client(Web, "b");
    a.login("alice", &usersig).await.unwrap();
    let mut took = Vec::new();
    let rounds = 30;
    for round in 0..rounds {
        let (new, old) = if round % 2 == 0 {
            (&mut b, &mut a)
        } else {
            (&mut a, &mut b)
        };
        new.login("alice", &usersig).await.unwrap();
        let ready = loop {
            match new.try_next_event_at() {
                Some((at, Event::Ready)) => break at,
                Some(_) => continue,
                None => panic!("round {round}: no SDK_READY queued"),
            }
        };
        let kicked = loop {
            match tokio::time::timeout(WAIT, old.next_event_at()).await {
                Ok(Some((at, Event::Kicked(_)))) => break at,
                Ok(Some(_)) => continue,
                other => panic!("round {round}: no kick: {other:?}"),
            }
        };
        took.push(kicked.saturating_duration_since(ready));
    }
    took.sort();
    let median = took[took.len() / 2];
    println!(
        "kick after the newcomer's SDK_READY, over {rounds} rounds: median {median:?}, max {:?}",
        took[took.len() - 1]
    );
    assert!(
        median < Duration::from_millis(10),
        "median {median:?}: {took:?}"
    );
}
