//! The behaviour suite: every decision the server makes, the same test body run against
//! both backends — embedded (SQLite) and cluster (a real `redis-server`). Both must pass:
//! this is how the two modes stay in step. Clients talk over real sockets; the tests read
//! the server's state only through the seam (`state.backend()`), never a mode's internals.

mod common;
mod rest_client;

use std::time::Duration;

use common::{
    expect_kicked, login, login_ok, recv, recv_error, send, sig, RedisServer, Server, Ws,
};
use common::{APP, KEY};
use rest_client::{Rest, CHECK, DELETE, IMPORT, KICK, ONLINE};
use serde_json::json;
use tim_proto::{ClientFrame, KickReason, Login, Platform, ServerFrame};
use timd::apps::AppConfig;
use timd::config::ClusterSettings;
use timd::policy::{LoginPolicy, LoginSettings};

const GET_SETTINGS: &str = "/v4/timd/get_login_settings";
const SET_SETTINGS: &str = "/v4/timd/set_login_settings";
const HISTORY: &str = "/v4/timd/get_login_settings_history";
const ONLINE_SUMMARY: &str = "/v4/timd/online_summary";
const USER_SESSIONS: &str = "/v4/timd/user_sessions";
const EVENTS: &str = "/v4/timd/get_events";
const EVENT_COUNTS: &str = "/v4/timd/get_event_counts";
const CONSOLE_APIS: [&str; 4] = [ONLINE_SUMMARY, USER_SESSIONS, EVENTS, EVENT_COUNTS];

/// A second app served by the same timd (several-apps tests).
const APP_B: u32 = 1_400_000_777;
const KEY_B: &str = "the-second-app-key-0123456789";

#[derive(Clone, Copy, Debug)]
enum Mode {
    Embedded,
    Cluster,
}

/// A server on the backend of `mode`; in cluster mode with its own `redis-server`.
struct Env {
    server: Server,
    _redis: Option<RedisServer>,
}

impl Env {
    async fn start(mode: Mode, settings: LoginSettings) -> Env {
        Env::start_with(mode, move |c| c.login = settings).await
    }

    async fn start_with(mode: Mode, tweak: impl FnOnce(&mut timd::Config)) -> Env {
        let redis = matches!(mode, Mode::Cluster).then(RedisServer::start);
        let url = redis.as_ref().map(|r| r.url());
        let server = Server::start(move |c| {
            if let Some(url) = url {
                let mut cluster = ClusterSettings::new(url);
                cluster.lease_ms = 3_000;
                c.cluster = Some(cluster);
            }
            tweak(c);
        })
        .await;
        Env {
            server,
            _redis: redis,
        }
    }

    fn rest(&self) -> Rest {
        Rest::new(self.server.addr, APP, KEY)
    }

    /// Cluster mode: another node on the same Redis (`None` in embedded mode).
    async fn second_node(&self) -> Option<Server> {
        let url = self._redis.as_ref()?.url();
        Some(
            Server::start(move |c| {
                let mut cluster = ClusterSettings::new(url);
                cluster.lease_ms = 3_000;
                c.cluster = Some(cluster);
            })
            .await,
        )
    }

    /// `user`'s instance ids holding a slot, earliest first, as the backend reports them.
    async fn instances(&self, user: &str) -> Vec<String> {
        self.server
            .state
            .backend()
            .instances(APP, user)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.instance)
            .collect()
    }

    /// Waits until `user`'s `instance` is away (its socket dropped, its slot held).
    async fn until_away(&self, user: &str, instance: &str) {
        let deadline = tokio::time::Instant::now() + common::WAIT;
        loop {
            let all = self
                .server
                .state
                .backend()
                .instances(APP, user)
                .await
                .unwrap();
            if all.iter().any(|i| i.instance == instance && !i.attached) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user}/{instance} never away"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(super::Mode::Embedded).await
            }
            #[tokio::test]
            async fn cluster() {
                super::$name(super::Mode::Cluster).await
            }
        }
    )*};
}

on_both_backends!(
    over_the_web_limit_the_earliest_is_kicked_and_no_one_else,
    a_policy_conflict_kicks_the_other_platform,
    a_resume_takes_its_own_slot_back_and_kicks_no_one,
    kicked_while_away_the_resume_learns_why,
    logout_ends_only_the_caller_and_its_tickets,
    a_renewal_keeps_the_session,
    a_rest_kick_kicks_everywhere_and_revokes_older_usersigs,
    a_renewal_with_a_usersig_older_than_a_kick_is_refused,
    accounts_are_imported_checked_and_deleted,
    query_online_status_reports_platforms,
    settings_are_read_changed_and_kept_in_history,
    a_bad_settings_change_changes_nothing,
    a_raised_limit_decides_the_next_login,
    apply_now_kicks_what_the_new_settings_forbid,
    apps_share_nothing,
    the_demo_page_sees_the_backend,
    the_console_sees_the_backend,
    the_console_apis_need_the_admin,
);

fn settings(web: u8, other: u8, policy: LoginPolicy) -> LoginSettings {
    LoginSettings {
        web_instances: web,
        platform_instances: other,
        policy,
    }
}

async fn login_on(ws: &mut Ws, user: &str, instance: &str, platform: Platform) -> ServerFrame {
    let frame = ClientFrame::Login(Login {
        seq: 1,
        sdkappid: APP,
        user: user.into(),
        usersig: sig(user),
        platform,
        instance: instance.into(),
    });
    send(ws, &frame).await;
    recv(ws).await
}

fn resume(ticket: &str) -> ClientFrame {
    ClientFrame::Resume {
        seq: 2,
        ticket: ticket.to_owned(),
    }
}

async fn over_the_web_limit_the_earliest_is_kicked_and_no_one_else(mode: Mode) {
    let env = Env::start(mode, settings(2, 1, LoginPolicy::Dual)).await;
    let mut a1 = env.server.connect().await;
    login_ok(&mut a1, 1, "alice", "a1").await;
    let mut a2 = env.server.connect().await;
    login_ok(&mut a2, 1, "alice", "a2").await;
    let mut a3 = env.server.connect().await;
    login_ok(&mut a3, 1, "alice", "a3").await;
    expect_kicked(&mut a1, KickReason::MultipleAccount).await;
    common::expect_untouched(&mut a2).await;
    common::expect_untouched(&mut a3).await;
    assert_eq!(env.instances("alice").await, ["a2", "a3"]);
}

async fn a_policy_conflict_kicks_the_other_platform(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::Single)).await;
    let mut tab = env.server.connect().await;
    login_ok(&mut tab, 1, "alice", "tab").await;
    let mut phone = env.server.connect().await;
    assert!(matches!(
        login_on(&mut phone, "alice", "phone", Platform::Android).await,
        ServerFrame::LoginOk(_)
    ));
    expect_kicked(&mut tab, KickReason::MultipleDevice).await;
    assert_eq!(env.instances("alice").await, ["phone"]);
}

async fn a_resume_takes_its_own_slot_back_and_kicks_no_one(mode: Mode) {
    let env = Env::start(mode, settings(2, 1, LoginPolicy::Dual)).await;
    let mut a = env.server.connect().await;
    let ok = login_ok(&mut a, 1, "alice", "a").await;
    let mut b = env.server.connect().await;
    login_ok(&mut b, 1, "alice", "b").await;
    drop(a);
    env.until_away("alice", "a").await;
    let mut again = env.server.connect().await;
    send(&mut again, &resume(&ok.ticket)).await;
    assert!(matches!(
        recv(&mut again).await,
        ServerFrame::ResumeOk { .. }
    ));
    common::expect_untouched(&mut b).await;
    assert_eq!(env.instances("alice").await, ["a", "b"], "its own place");
}

async fn kicked_while_away_the_resume_learns_why(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::Dual)).await;
    let mut a = env.server.connect().await;
    let ok = login_ok(&mut a, 1, "alice", "a").await;
    drop(a);
    env.until_away("alice", "a").await;
    let mut b = env.server.connect().await;
    login_ok(&mut b, 1, "alice", "b").await;
    let mut again = env.server.connect().await;
    send(&mut again, &resume(&ok.ticket)).await;
    expect_kicked(&mut again, KickReason::MultipleAccount).await;
    common::expect_untouched(&mut b).await;
    assert_eq!(env.instances("alice").await, ["b"]);
}

async fn logout_ends_only_the_caller_and_its_tickets(mode: Mode) {
    let env = Env::start(mode, settings(2, 1, LoginPolicy::Dual)).await;
    let mut a = env.server.connect().await;
    let ok = login_ok(&mut a, 1, "alice", "a").await;
    let mut b = env.server.connect().await;
    login_ok(&mut b, 1, "alice", "b").await;
    send(&mut a, &ClientFrame::Logout { seq: 5 }).await;
    assert_eq!(recv(&mut a).await, ServerFrame::LogoutOk { seq: 5 });
    common::expect_untouched(&mut b).await;
    assert_eq!(env.instances("alice").await, ["b"]);
    let mut again = env.server.connect().await;
    send(&mut again, &resume(&ok.ticket)).await;
    let (seq, code, message) = recv_error(&mut again).await;
    assert_eq!((seq, code), (Some(2), 70402), "{message}");
    assert!(message.contains("log in again"), "{message}");
}

async fn a_renewal_keeps_the_session(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::Dual)).await;
    let mut a = env.server.connect().await;
    let first = login_ok(&mut a, 1, "alice", "a").await;
    let fresh = tim_usersig::generate(APP, KEY, "alice", common::now(), 7200);
    send(
        &mut a,
        &ClientFrame::Renew {
            seq: 3,
            usersig: fresh,
        },
    )
    .await;
    let ServerFrame::RenewOk { seq, expire_at, .. } = recv(&mut a).await else {
        panic!("renew_ok")
    };
    assert_eq!(seq, 3);
    assert!(expire_at > first.expire_at || first.expire_at == expire_at);
    // A forged renewal is refused and the session stays.
    let forged = tim_usersig::generate(APP, "wrong-key", "alice", common::now(), 7200);
    send(
        &mut a,
        &ClientFrame::Renew {
            seq: 4,
            usersig: forged,
        },
    )
    .await;
    assert_eq!(recv_error(&mut a).await.1, 70009);
    common::expect_untouched(&mut a).await;
    assert_eq!(env.instances("alice").await, ["a"]);
}

async fn a_rest_kick_kicks_everywhere_and_revokes_older_usersigs(mode: Mode) {
    let env = Env::start(mode, settings(2, 1, LoginPolicy::All)).await;
    let old = sig("alice");
    let mut tab = env.server.connect().await;
    login_ok(&mut tab, 1, "alice", "tab").await;
    let mut phone = env.server.connect().await;
    login_on(&mut phone, "alice", "phone", Platform::IPhone).await;
    let answer = env.rest().call(KICK, json!({"UserID": "alice"})).await;
    assert_eq!(answer.code(), 0, "{}", answer.json);
    expect_kicked(&mut tab, KickReason::RestApi).await;
    expect_kicked(&mut phone, KickReason::RestApi).await;
    assert!(env.instances("alice").await.is_empty());
    let mut again = env.server.connect().await;
    send(&mut again, &login(1, "alice", &old, "tab")).await;
    assert_eq!(recv_error(&mut again).await.1, 70001, "an older UserSig");
    let mut fresh = env.server.connect().await;
    login_ok(&mut fresh, 1, "alice", "tab").await;
    let ghost = env.rest().call(KICK, json!({"UserID": "ghost"})).await;
    assert_eq!(ghost.code(), 70107);
}

/// A session logged in after a REST kick cannot renew with a UserSig the kick revoked: 70001
/// at once (not at the next lease round), and the session goes on with its UserSig.
async fn a_renewal_with_a_usersig_older_than_a_kick_is_refused(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::Dual)).await;
    let old = sig("alice");
    let answer = env.rest().call(KICK, json!({"UserID": "alice"})).await;
    assert_eq!(answer.code(), 70107, "no account yet: {}", answer.json);
    let mut tab = env.server.connect().await;
    login_ok(&mut tab, 1, "alice", "tab").await;
    let answer = env.rest().call(KICK, json!({"UserID": "alice"})).await;
    assert_eq!(answer.code(), 0, "{}", answer.json);
    expect_kicked(&mut tab, KickReason::RestApi).await;
    let mut tab = env.server.connect().await;
    login_ok(&mut tab, 1, "alice", "tab").await;
    send(
        &mut tab,
        &ClientFrame::Renew {
            seq: 3,
            usersig: old,
        },
    )
    .await;
    let (seq, code, _) = recv_error(&mut tab).await;
    assert_eq!((seq, code), (Some(3), 70001));
    common::expect_untouched(&mut tab).await;
    assert_eq!(env.instances("alice").await, ["tab"]);
}

async fn accounts_are_imported_checked_and_deleted(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::Dual)).await;
    let rest = env.rest();
    assert_eq!(rest.call(IMPORT, json!({"UserID": "bob"})).await.code(), 0);
    let check = rest
        .call(
            CHECK,
            json!({"CheckItem": [{"UserID": "bob"}, {"UserID": "carol"}]}),
        )
        .await;
    let status: Vec<&str> = check.json["ResultItem"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["AccountStatus"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["Imported", "NotImported"]);
    let mut bob = env.server.connect().await;
    login_ok(&mut bob, 1, "bob", "b").await;
    let deleted = rest
        .call(
            DELETE,
            json!({"DeleteItem": [{"UserID": "bob"}, {"UserID": "nobody"}]}),
        )
        .await;
    let codes: Vec<u64> = deleted.json["ResultItem"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ResultCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [0, 70107]);
    expect_kicked(&mut bob, KickReason::RestApi).await;
    assert_eq!(rest.status_of("bob").await, "NotImported");
}

async fn query_online_status_reports_platforms(mode: Mode) {
    let env = Env::start(mode, settings(2, 1, LoginPolicy::All)).await;
    let mut tab = env.server.connect().await;
    login_ok(&mut tab, 1, "alice", "tab").await;
    let mut pc = env.server.connect().await;
    login_on(&mut pc, "alice", "pc", Platform::Windows).await;
    env.rest().call(IMPORT, json!({"UserID": "bob"})).await;
    let answer = env
        .rest()
        .call(
            ONLINE,
            json!({"To_Account": ["alice", "bob", "nobody"], "IsNeedDetail": 1}),
        )
        .await;
    let result = &answer.json["QueryResult"];
    assert_eq!(result[0]["Status"], "Online");
    assert_eq!(
        result[0]["Detail"],
        json!([{"Platform": "Web", "Status": "Online"}, {"Platform": "PC", "Status": "Online"}])
    );
    assert_eq!(result[1]["Status"], "Offline");
    assert_eq!(answer.json["ErrorList"][0]["To_Account"], "nobody");
}

async fn settings_are_read_changed_and_kept_in_history(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::Dual)).await;
    let rest = env.rest();
    let got = rest.call(GET_SETTINGS, json!({})).await;
    assert_eq!(
        got.json["LoginSettings"],
        json!({"WebInstances": 1, "PlatformInstances": 1, "MultiPlatformPolicy": "dual"})
    );
    assert_eq!(got.json["Version"], 1);
    let set = rest
        .call(
            SET_SETTINGS,
            json!({"WebInstances": 3, "MultiPlatformPolicy": "all"}),
        )
        .await;
    assert_eq!(set.code(), 0, "{}", set.json);
    assert_eq!(
        set.json["LoginSettings"],
        json!({"WebInstances": 3, "PlatformInstances": 1, "MultiPlatformPolicy": "all"})
    );
    assert_eq!(set.json["Version"], 2);
    let set = rest
        .call(SET_SETTINGS, json!({"PlatformInstances": 2}))
        .await;
    assert_eq!(set.json["Version"], 3);
    let got = rest.call(GET_SETTINGS, json!({})).await;
    assert_eq!(
        got.json["LoginSettings"],
        json!({"WebInstances": 3, "PlatformInstances": 2, "MultiPlatformPolicy": "all"})
    );
    let history = rest.call(HISTORY, json!({})).await;
    let entries = history.json["History"].as_array().unwrap();
    let versions: Vec<u64> = entries
        .iter()
        .map(|e| e["Version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1], "newest first");
    assert_eq!(entries[0]["Admin"], "administrator");
    assert_eq!(entries[2]["Admin"], "(flags)");
    assert_eq!(entries[1]["LoginSettings"]["WebInstances"], 3);
    assert!(entries[0]["Time"].as_u64().unwrap() >= common::now() - 60);
}

async fn a_bad_settings_change_changes_nothing(mode: Mode) {
    let env = Env::start(mode, settings(2, 1, LoginPolicy::Dual)).await;
    let rest = env.rest();
    for bad in [
        json!({"WebInstances": 11}),
        json!({"WebInstances": 0}),
        json!({"PlatformInstances": 4}),
        json!({"MultiPlatformPolicy": "quad"}),
        json!({"WebInstances": 2, "PlatformInstances": 9}),
        json!({"WebInstance": 2}),
        json!({}),
    ] {
        let answer = rest.call(SET_SETTINGS, bad.clone()).await;
        assert_eq!(answer.code(), 70402, "{bad}: {}", answer.json);
    }
    let got = rest.call(GET_SETTINGS, json!({})).await;
    assert_eq!(got.json["Version"], 1);
    assert_eq!(got.json["LoginSettings"]["WebInstances"], 2);
    assert_eq!(
        rest.call(HISTORY, json!({})).await.json["History"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The seed's scenario at run time: Web limit 1, two tabs (the first kicked); the admin
/// raises the limit to 2; the next tab fits beside the second.
async fn a_raised_limit_decides_the_next_login(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::Dual)).await;
    let mut t1 = env.server.connect().await;
    login_ok(&mut t1, 1, "alice", "t1").await;
    let mut t2 = env.server.connect().await;
    login_ok(&mut t2, 1, "alice", "t2").await;
    expect_kicked(&mut t1, KickReason::MultipleAccount).await;
    let set = env
        .rest()
        .call(SET_SETTINGS, json!({"WebInstances": 2}))
        .await;
    assert_eq!(set.code(), 0);
    let mut t3 = env.server.connect().await;
    login_ok(&mut t3, 1, "alice", "t3").await;
    common::expect_untouched(&mut t2).await;
    assert_eq!(env.instances("alice").await, ["t2", "t3"]);
    // A fourth exceeds the new limit: the earliest (t2) goes.
    let mut t4 = env.server.connect().await;
    login_ok(&mut t4, 1, "alice", "t4").await;
    expect_kicked(&mut t2, KickReason::MultipleAccount).await;
    common::expect_untouched(&mut t3).await;
    assert_eq!(env.instances("alice").await, ["t3", "t4"]);
}

async fn apply_now_kicks_what_the_new_settings_forbid(mode: Mode) {
    let env = Env::start(mode, settings(3, 1, LoginPolicy::All)).await;
    let mut tabs = Vec::new();
    for t in ["t1", "t2", "t3"] {
        let mut ws = env.server.connect().await;
        login_ok(&mut ws, 1, "alice", t).await;
        tabs.push(ws);
    }
    let mut pc = env.server.connect().await;
    login_on(&mut pc, "alice", "pc", Platform::Windows).await;
    let mut bob = env.server.connect().await;
    login_ok(&mut bob, 1, "bob", "b1").await;
    // Without ApplyNow: nobody is kicked, the next login decides.
    let set = env
        .rest()
        .call(SET_SETTINGS, json!({"WebInstances": 2}))
        .await;
    assert_eq!(set.code(), 0);
    for ws in &mut tabs {
        common::expect_untouched(ws).await;
    }
    assert_eq!(env.instances("alice").await, ["t1", "t2", "t3", "pc"]);
    // With ApplyNow: beyond one Web tab the earliest go (multipleAccount).
    let set = env
        .rest()
        .call(SET_SETTINGS, json!({"WebInstances": 1, "ApplyNow": 1}))
        .await;
    assert_eq!(set.code(), 0, "{}", set.json);
    // Answered: every node applied it, the kicks are on their way.
    expect_kicked(&mut tabs[0], KickReason::MultipleAccount).await;
    expect_kicked(&mut tabs[1], KickReason::MultipleAccount).await;
    common::expect_untouched(&mut tabs[2]).await;
    common::expect_untouched(&mut pc).await;
    common::expect_untouched(&mut bob).await;
    assert_eq!(env.instances("alice").await, ["t3", "pc"]);
    assert_eq!(env.instances("bob").await, ["b1"]);
    // A policy change applied now: under `single` only the latest login's platform stays
    // (the PC logged in after t3), and t3 goes as a conflicting login would kick it.
    let set = env
        .rest()
        .call(
            SET_SETTINGS,
            json!({"MultiPlatformPolicy": "single", "ApplyNow": 1}),
        )
        .await;
    assert_eq!(set.code(), 0);
    expect_kicked(&mut tabs[2], KickReason::MultipleDevice).await;
    common::expect_untouched(&mut pc).await;
    assert_eq!(env.instances("alice").await, ["pc"]);
}

async fn apps_share_nothing(mode: Mode) {
    let env = Env::start_with(mode, |c| {
        c.apps = vec![
            AppConfig {
                sdkappid: APP,
                key: KEY.into(),
                admins: vec!["administrator".into()],
                login: settings(1, 1, LoginPolicy::Dual),
                rest_rate_limit: 0,
                callback: None,
            },
            AppConfig {
                sdkappid: APP_B,
                key: KEY_B.into(),
                admins: vec!["administrator".into(), "ops".into()],
                login: settings(1, 1, LoginPolicy::Dual),
                rest_rate_limit: 0,
                callback: None,
            },
        ];
    })
    .await;
    // alice in app A and alice in app B are two users: no kick between them.
    let mut a = env.server.connect().await;
    login_ok(&mut a, 1, "alice", "tab").await;
    let mut b = env.server.connect().await;
    let usersig_b = tim_usersig::generate(APP_B, KEY_B, "alice", common::now(), 3600);
    let login_b = |usersig: String, instance: &str| {
        ClientFrame::Login(Login {
            seq: 1,
            sdkappid: APP_B,
            user: "alice".into(),
            usersig,
            platform: Platform::Web,
            instance: instance.into(),
        })
    };
    send(&mut b, &login_b(usersig_b.clone(), "tab")).await;
    let ServerFrame::LoginOk(ok_b) = recv(&mut b).await else {
        panic!("app B login")
    };
    common::expect_untouched(&mut a).await;
    // App A's UserSig presented for app B: 70014; an unknown app: 70020.
    let mut c = env.server.connect().await;
    send(&mut c, &login_b(sig("alice"), "other")).await;
    assert_eq!(recv_error(&mut c).await.1, 70014);
    let mut d = env.server.connect().await;
    send(
        &mut d,
        &ClientFrame::Login(Login {
            seq: 1,
            sdkappid: 1_499_999_999,
            user: "alice".into(),
            usersig: sig("alice"),
            platform: Platform::Web,
            instance: "x".into(),
        }),
    )
    .await;
    assert_eq!(recv_error(&mut d).await.1, 70020);
    // REST: app B's admin cannot act on app A; a kick in A leaves B alone.
    let rest_b = Rest::new(env.server.addr, APP_B, KEY_B);
    let cross = Rest {
        sdkappid: APP,
        ..rest_b.clone()
    };
    assert_eq!(
        cross.call(KICK, json!({"UserID": "alice"})).await.code(),
        70009
    );
    let unknown = Rest::new(env.server.addr, 1_499_999_999, KEY_B);
    assert_eq!(
        unknown.call(KICK, json!({"UserID": "alice"})).await.code(),
        60006
    );
    assert_eq!(
        env.rest()
            .call(KICK, json!({"UserID": "alice"}))
            .await
            .code(),
        0
    );
    expect_kicked(&mut a, KickReason::RestApi).await;
    common::expect_untouched(&mut b).await;
    // Settings are per app.
    assert_eq!(
        rest_b
            .call(SET_SETTINGS, json!({"WebInstances": 2}))
            .await
            .code(),
        0
    );
    assert_eq!(
        env.rest().call(GET_SETTINGS, json!({})).await.json["LoginSettings"]["WebInstances"],
        1
    );
    // App A's kick time does not revoke app B's UserSigs, and B's ticket resumes in B.
    let mut b2 = env.server.connect().await;
    send(&mut b2, &login_b(usersig_b, "tab2")).await;
    assert!(matches!(recv(&mut b2).await, ServerFrame::LoginOk(_)));
    common::expect_untouched(&mut b).await;
    let in_b: Vec<String> = env
        .server
        .state
        .backend()
        .instances(APP_B, "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.instance)
        .collect();
    assert_eq!(in_b, ["tab", "tab2"], "app B's new limit of 2");
    assert!(
        env.instances("alice").await.is_empty(),
        "app A's alice is out"
    );
    drop(b);
    let mut again = env.server.connect().await;
    send(&mut again, &resume(&ok_b.ticket)).await;
    assert!(matches!(
        recv(&mut again).await,
        ServerFrame::ResumeOk { .. }
    ));
}

async fn the_demo_page_sees_the_backend(mode: Mode) {
    let env = Env::start_with(mode, |c| {
        c.demo = true;
        c.login = settings(2, 1, LoginPolicy::Dual);
    })
    .await;
    let mut a = env.server.connect().await;
    login_ok(&mut a, 1, "alice", "tab-1").await;
    let mut b = env.server.connect().await;
    login_ok(&mut b, 1, "alice", "tab-2").await;
    let mut c = env.server.connect().await;
    login_ok(&mut c, 1, "alice", "tab-3").await;
    expect_kicked(&mut a, KickReason::MultipleAccount).await;
    let rest = env.rest();
    let page = rest
        .request(hyper::Method::GET, "/demo/instances?user=alice", "")
        .await;
    let instances: Vec<&str> = page.json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    assert_eq!(instances, ["tab-2", "tab-3"], "{}", page.json);
    let kicks = page.json["kicks"].as_array().unwrap();
    assert_eq!(kicks.len(), 1, "{}", page.json);
    assert_eq!(kicks[0]["instance"], "tab-1");
    assert_eq!(kicks[0]["reason"], "multipleAccount");
    // The settings it shows follow the REST changes.
    rest.call(SET_SETTINGS, json!({"WebInstances": 5})).await;
    let shown = rest.request(hyper::Method::GET, "/demo/settings", "").await;
    assert_eq!(shown.json["webInstances"], 5, "{}", shown.json);
    assert_eq!(shown.json["version"], 2);
}

/// Calls `api` with `body` until `done` holds for its answer (the console's numbers from
/// other nodes arrive within a second or two); returns that answer.
async fn until(
    rest: &Rest,
    api: &str,
    body: serde_json::Value,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = rest.call(api, body.clone()).await;
        assert_eq!(answer.code(), 0, "{api}: {}", answer.json);
        if done(&answer.json) {
            return answer.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{api}: never as expected: {}",
            answer.json
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn platform(summary: &serde_json::Value, name: &str) -> (u64, u64) {
    let p = summary["Platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Platform"] == name)
        .unwrap_or_else(|| panic!("no {name} in {summary}"));
    (p["Online"].as_u64().unwrap(), p["Away"].as_u64().unwrap())
}

fn kinds(events: &serde_json::Value, user: &str) -> Vec<String> {
    events["Events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["UserID"] == user)
        .map(|e| {
            format!(
                "{} {}",
                e["Kind"].as_str().unwrap(),
                e["Reason"].as_str().unwrap()
            )
        })
        .collect()
}

async fn the_console_sees_the_backend(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::All)).await;
    let rest = env.rest();
    let empty = rest.call(ONLINE_SUMMARY, json!({})).await.json;
    assert_eq!(
        (empty["Online"].as_u64(), empty["Away"].as_u64()),
        (Some(0), Some(0)),
        "{empty}"
    );
    assert_eq!(empty["Platforms"].as_array().unwrap().len(), 6);
    let mut tab = env.server.connect().await;
    login_ok(&mut tab, 1, "alice", "tab").await;
    let mut phone = env.server.connect().await;
    login_on(&mut phone, "alice", "phone", Platform::Android).await;
    let summary = until(&rest, ONLINE_SUMMARY, json!({}), |s| s["Online"] == 2).await;
    assert_eq!(platform(&summary, "Web"), (1, 0));
    assert_eq!(platform(&summary, "Android"), (1, 0));
    assert_eq!(
        summary["Nodes"].as_array().unwrap().len(),
        usize::from(matches!(mode, Mode::Cluster)),
        "{summary}"
    );

    // One user: each instance, earliest first; the phone goes away and shows so.
    let user = rest
        .call(USER_SESSIONS, json!({"UserID": "alice"}))
        .await
        .json;
    let instances = user["Instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{user}");
    assert_eq!(
        (
            instances[0]["Instance"].as_str(),
            instances[0]["Platform"].as_str(),
            instances[0]["Status"].as_str()
        ),
        (Some("tab"), Some("Web"), Some("Online"))
    );
    assert_eq!(instances[1]["Platform"], "Android");
    assert!(instances[0]["Since"].as_u64().unwrap() <= user["ServerTime"].as_u64().unwrap());
    assert_eq!(
        instances[0]["Node"].as_str().unwrap().is_empty(),
        matches!(mode, Mode::Embedded)
    );
    drop(phone);
    env.until_away("alice", "phone").await;
    let user = rest
        .call(USER_SESSIONS, json!({"UserID": "alice"}))
        .await
        .json;
    assert_eq!(user["Instances"][1]["Status"], "Away", "{user}");
    let summary = until(&rest, ONLINE_SUMMARY, json!({}), |s| s["Away"] == 1).await;
    assert_eq!(platform(&summary, "Android"), (0, 1));

    // A second tab kicks the first (limit 1), then the admin kicks alice: the feed has it
    // all, in order, and the chart's minute counts the logins and kicks.
    let mut tab2 = env.server.connect().await;
    login_ok(&mut tab2, 1, "alice", "tab2").await;
    expect_kicked(&mut tab, KickReason::MultipleAccount).await;
    assert_eq!(rest.call(KICK, json!({"UserID": "alice"})).await.code(), 0);
    expect_kicked(&mut tab2, KickReason::RestApi).await;
    let feed = until(&rest, EVENTS, json!({}), |e| kinds(e, "alice").len() >= 6).await;
    // A login and the kick it causes are seen by two sockets: they race to the feed.
    let mut seen = kinds(&feed, "alice");
    seen[3..5].sort();
    assert_eq!(
        seen,
        [
            "Login Register",
            "Login Register",
            "Disconnect LinkClose",
            "Kicked multipleAccount",
            "Login Register",
            "Kicked REST_API_Kick"
        ],
        "{feed}"
    );
    let login = &feed["Events"][3];
    assert_eq!(
        (login["Instance"].as_str(), login["Kicked"].as_u64()),
        (Some("tab2"), Some(1))
    );
    // The cursor: nothing new after it; a wait ends with the next event.
    let (stream, next) = (feed["Stream"].clone(), feed["Next"].clone());
    let later = rest
        .call(EVENTS, json!({"Stream": stream, "After": next}))
        .await
        .json;
    assert_eq!(later["Events"], json!([]), "{later}");
    let waiting = {
        let rest = rest.clone();
        let (stream, next) = (stream.clone(), next.clone());
        tokio::spawn(async move {
            rest.call(EVENTS, json!({"Stream": stream, "After": next, "Wait": 10}))
                .await
                .json
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bob = env.server.connect().await;
    login_ok(&mut bob, 1, "bob", "b").await;
    let woke = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the wait ends with the event")
        .unwrap();
    assert_eq!(kinds(&woke, "bob"), ["Login Register"], "{woke}");
    let counts = until(&rest, EVENT_COUNTS, json!({}), |c| {
        let last = c["Minutes"].as_array().unwrap().iter().rev().take(2);
        last.fold((0, 0), |(l, k), m| {
            (
                l + m["Logins"].as_u64().unwrap(),
                k + m["Kicks"].as_u64().unwrap(),
            )
        }) == (4, 2)
    })
    .await;
    let minutes = counts["Minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 61);
    assert!(minutes
        .windows(2)
        .all(|w| w[1]["Minute"].as_u64() == w[0]["Minute"].as_u64().map(|m| m + 60)));

    // Cluster mode: another node serves the same numbers (bob online; the REST kick took the
    // away phone too), and relays this node's events.
    if let Some(other) = env.second_node().await {
        let there = Rest::new(other.addr, APP, KEY);
        let summary = until(&there, ONLINE_SUMMARY, json!({}), |s| {
            s["Online"] == 1 && s["Away"] == 0
        })
        .await;
        assert_eq!(summary["Nodes"].as_array().unwrap().len(), 2, "{summary}");
        let mut carol = other.connect().await;
        login_ok(&mut carol, 1, "carol", "c").await;
        until(&rest, EVENTS, json!({}), |e| {
            kinds(e, "carol") == ["Login Register"]
        })
        .await;
        until(&rest, ONLINE_SUMMARY, json!({}), |s| s["Online"] == 2).await;
        until(&there, EVENT_COUNTS, json!({}), |c| {
            c["Minutes"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .take(2)
                .map(|m| m["Logins"].as_u64().unwrap())
                .sum::<u64>()
                == 5
        })
        .await;
        let user = there
            .call(USER_SESSIONS, json!({"UserID": "bob"}))
            .await
            .json;
        assert_eq!(
            user["Instances"][0]["Node"],
            env.server.state.backend().node().unwrap()
        );
        let user = rest
            .call(USER_SESSIONS, json!({"UserID": "carol"}))
            .await
            .json;
        assert_eq!(
            user["Instances"][0]["Node"],
            other.state.backend().node().unwrap()
        );
    }
}

async fn the_console_apis_need_the_admin(mode: Mode) {
    let env = Env::start(mode, settings(1, 1, LoginPolicy::All)).await;
    let rest = env.rest();
    let alice = tim_usersig::generate(APP, KEY, "alice", common::now(), 3600);
    let wrong_key = tim_usersig::generate(APP, "not-the-key", "administrator", common::now(), 3600);
    for api in CONSOLE_APIS {
        let as_user = rest
            .post(&format!("{api}?sdkappid={APP}&identifier=alice&usersig={alice}&random=1&contenttype=json"), "{}")
            .await
            .checked();
        assert_eq!(as_user.code(), 70403, "{api}: {}", as_user.json);
        let bad_sig = rest
            .post(&format!("{api}?sdkappid={APP}&identifier=administrator&usersig={wrong_key}&random=1&contenttype=json"), "{}")
            .await
            .checked();
        assert_eq!(bad_sig.code(), 70009, "{api}: {}", bad_sig.json);
        assert_eq!(
            bad_sig.json.as_object().unwrap().len(),
            3,
            "nothing beyond the envelope"
        );
    }
    for (api, body) in [
        (ONLINE_SUMMARY, json!({"X": 1})),
        (EVENT_COUNTS, json!({"X": 1})),
        (USER_SESSIONS, json!({})),
        (USER_SESSIONS, json!({"UserID": "bad user"})),
        (USER_SESSIONS, json!({"UserID": "alice", "X": 1})),
        (EVENTS, json!({"Wait": 26})),
        (EVENTS, json!({"Max": 0})),
        (EVENTS, json!({"Max": 501})),
        (EVENTS, json!({"After": -1})),
        (EVENTS, json!({"Stream": 5})),
        (EVENTS, json!({"Nope": 1})),
    ] {
        let answer = rest.call(api, body.clone()).await;
        assert_eq!(answer.code(), 70402, "{api} {body}: {}", answer.json);
    }
    let nobody = rest.call(USER_SESSIONS, json!({"UserID": "nobody"})).await;
    assert_eq!(nobody.code(), 70107, "{}", nobody.json);
    // An account with no instance online: found, nothing online.
    rest.call(IMPORT, json!({"UserID": "dave"})).await;
    let dave = rest.call(USER_SESSIONS, json!({"UserID": "dave"})).await;
    assert_eq!(dave.code(), 0, "{}", dave.json);
    assert_eq!(dave.json["Instances"], json!([]));

    // The console's calls spend the app's REST budget like any other.
    let limited = Env::start_with(mode, |c| c.rest_rate_limit = 1).await;
    let rest = limited.rest();
    let mut codes = Vec::new();
    for api in CONSOLE_APIS {
        let body = if api == USER_SESSIONS {
            json!({"UserID": "dave"})
        } else {
            json!({})
        };
        codes.push(rest.call(api, body).await.code());
    }
    assert!(codes.contains(&60011), "{codes:?}");
}
