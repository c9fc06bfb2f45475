//! The admin REST API over real HTTP (hyper client) against a `timd` on 127.0.0.1:0 with a
//! real SQLite file; online users are real WebSocket clients.

mod common;
mod rest_client;

use std::time::Duration;

use common::*;
use hyper::Method;
use rest_client::*;
use serde_json::{json, Value};
use tim_proto::{close, ClientFrame, KickReason, Login, Platform, ServerFrame};
use timd::Store;

async fn start(tweak: impl FnOnce(&mut timd::Config)) -> (Server, Rest) {
    let server = Server::start(tweak).await;
    let rest = Rest::new(server.addr, APP, KEY);
    (server, rest)
}

/// A second connection on the server's live SQLite file: what is durable, not what the
/// server says.
fn store(server: &Server) -> Store {
    Store::open_in(&server.state.config().data_dir, APP).unwrap()
}

/// Logs `user` in on a new socket with `usersig`: the socket, or the error code.
async fn try_login(
    server: &Server,
    user: &str,
    usersig: &str,
    platform: Platform,
) -> Result<Ws, u32> {
    let mut ws = server.connect().await;
    let frame = ClientFrame::Login(Login {
        seq: 1,
        sdkappid: APP,
        user: user.into(),
        usersig: usersig.into(),
        platform,
        instance: format!("{user}-{}", next_instance()),
    });
    send(&mut ws, &frame).await;
    match recv(&mut ws).await {
        ServerFrame::LoginOk(_) => Ok(ws),
        ServerFrame::Error(e) => Err(e.code),
        other => panic!("unexpected {other:?}"),
    }
}

fn next_instance() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn online(server: &Server, user: &str) -> Ws {
    try_login(server, user, &sig(user), Platform::Web)
        .await
        .unwrap_or_else(|code| panic!("login of {user} failed with {code}"))
}

fn sig_at(user: &str, time: u64) -> String {
    tim_usersig::generate(APP, KEY, user, time, 3600)
}

/// Holds the store thread in a job until the returned sender is dropped; the handle
/// answers once the job is done.
async fn hold_store(
    server: &Server,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), timd::store::StoreError>>,
) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (running, holding) = tokio::sync::oneshot::channel();
    let handle = server.state.store().clone();
    let busy = tokio::spawn(async move {
        handle
            .call(move |_| {
                let _ = running.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
    });
    holding.await.expect("the store thread is held");
    (release, busy)
}

/// Expects `kicked{REST_API_Kick}` then close 4002.
async fn expect_rest_kick(ws: &mut Ws) {
    assert_eq!(
        recv(ws).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    assert_eq!(recv_close(ws).await, close::KICKED);
}

#[tokio::test]
async fn unknown_paths_get_60009() {
    let (_server, rest) = start(|_| {}).await;
    let q = rest.query();
    for path in [
        "/v4".to_owned(),
        "/v4/".to_owned(),
        format!("/v4/openim/sendmsg?{q}"),
        format!("/v4/im_open_login_svc/kick/?{q}"),
        format!("/v4/im_open_login_svc/Kick?{q}"),
        "/v4/im_open_login_svc/kick/x/y".to_owned(),
    ] {
        let a = rest.post(&path, "{}").await.checked();
        assert_eq!(a.code(), 60009, "{path}: {}", a.json);
    }
}

/// As Tencent's service does, and as published clients rely on (`account_check` sent as a
/// GET with its JSON body): the method does not matter, the JSON body does.
#[tokio::test]
async fn any_method_with_a_json_body_is_served() {
    let (server, rest) = start(|_| {}).await;
    let _alice = online(&server, "alice").await;
    let check = json!({"CheckItem": [{"UserID": "alice"}, {"UserID": "nobody"}]}).to_string();
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::from_bytes(b"FETCH").unwrap(),
    ] {
        let a = rest
            .request(
                method.clone(),
                &format!("{CHECK}?{}", rest.query()),
                check.clone(),
            )
            .await
            .checked();
        assert_eq!(a.code(), 0, "{method}: {}", a.json);
        assert_eq!(
            a.json["ResultItem"][0]["AccountStatus"], "Imported",
            "{method}"
        );
        assert_eq!(a.json["ResultItem"][1]["AccountStatus"], "NotImported");
    }
    // Effects too: an import by PUT, a status query by GET.
    let a = rest
        .request(
            Method::PUT,
            &format!("{IMPORT}?{}", rest.query()),
            r#"{"UserID":"bob"}"#,
        )
        .await
        .checked();
    assert_eq!(a.code(), 0, "{}", a.json);
    assert_eq!(rest.status_of("bob").await, "Imported");
    let a = rest
        .request(
            Method::GET,
            &format!("{ONLINE}?{}", rest.query()),
            r#"{"To_Account":["alice"]}"#,
        )
        .await
        .checked();
    assert_eq!(a.json["QueryResult"][0]["Status"], "Online", "{}", a.json);
    // Without a body there is nothing to do: the body's own error.
    let a = rest
        .request(Method::GET, &format!("{CHECK}?{}", rest.query()), "")
        .await
        .checked();
    assert_eq!(a.code(), 60003);
    // The URL is checked first, whatever the method.
    let a = rest
        .request(Method::GET, &format!("{CHECK}?sdkappid={APP}"), check)
        .await
        .checked();
    assert_ne!(a.code(), 0);
}

#[tokio::test]
async fn every_url_failure_has_its_code_and_changes_nothing() {
    let (server, rest) = start(|_| {}).await;
    let t = now();
    let good = rest.admin_sig(0);
    let q = |s: &str| format!("{IMPORT}?{s}");
    let cases: Vec<(String, u64)> = vec![
        (IMPORT.to_owned(), 60012),
        (
            q(&format!("identifier={ADMIN}&usersig={good}&random=1")),
            60012,
        ),
        (
            q(&format!(
                "sdkappid=&identifier={ADMIN}&usersig={good}&random=1"
            )),
            60012,
        ),
        (
            q(&format!(
                "sdkappid=1400000009&identifier={ADMIN}&usersig={good}&random=1"
            )),
            60006,
        ),
        (
            q(&format!(
                "sdkappid=abc&identifier={ADMIN}&usersig={good}&random=1"
            )),
            60006,
        ),
        (
            q(&format!(
                "sdkappid={APP}&sdkappid={APP}&identifier={ADMIN}&usersig={good}&random=1"
            )),
            60002,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier=%zz&usersig={good}&random=1"
            )),
            60002,
        ),
        (
            q(&format!("sdkappid={APP}&identifier={ADMIN}&usersig={good}")),
            60002,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig={good}&random=-1"
            )),
            60002,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig={good}&random=4294967296"
            )),
            60002,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig={good}&random=1&contenttype=xml"
            )),
            60002,
        ),
        (q(&format!("sdkappid={APP}&usersig={good}&random=1")), 70403),
        (
            q(&format!(
                "sdkappid={APP}&identifier=alice&usersig={good}&random=1"
            )),
            70403,
        ),
        (
            q(&format!("sdkappid={APP}&identifier={ADMIN}&random=1")),
            70002,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig=&random=1"
            )),
            70002,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig=garbage&random=1"
            )),
            70003,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig={}&random=1",
                tim_usersig::generate(APP, "wrong-key", ADMIN, t, 3600)
            )),
            70009,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig={}&random=1",
                tim_usersig::generate(APP, KEY, "alice", t, 3600)
            )),
            70013,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig={}&random=1",
                tim_usersig::generate(APP + 1, KEY, ADMIN, t, 3600)
            )),
            70014,
        ),
        (
            q(&format!(
                "sdkappid={APP}&identifier={ADMIN}&usersig={}&random=1",
                tim_usersig::generate(APP, KEY, ADMIN, t - 100, 60)
            )),
            70001,
        ),
    ];
    for (url, code) in &cases {
        let a = rest.post(url, r#"{"UserID":"victim"}"#).await.checked();
        assert_eq!(a.code(), *code, "{url}: {}", a.json);
    }
    // The well-formed call works, also without contenttype (Tencent's clients all send it;
    // its only value is json).
    let url = q(&format!(
        "sdkappid={APP}&identifier={ADMIN}&usersig={good}&random=0&other=x"
    ));
    assert_eq!(
        rest.post(&url, r#"{"UserID":"ok"}"#).await.checked().code(),
        0
    );
    let s = store(&server);
    assert!(!s.account_exists(APP, "victim").unwrap());
    assert!(s.account_exists(APP, "ok").unwrap());
}

#[tokio::test]
async fn every_body_failure_has_its_code_and_changes_nothing() {
    let (server, rest) = start(|_| {}).await;
    let mut alice = online(&server, "alice").await;
    let many = |n: usize| (0..n).map(|i| format!("victim{i}")).collect::<Vec<_>>();
    let items = |n: usize| {
        many(n)
            .into_iter()
            .map(|u| json!({ "UserID": u }))
            .collect::<Vec<_>>()
    };
    let alice_and = |rest: Vec<Value>| {
        let mut all = vec![json!({"UserID": "alice"})];
        all.extend(rest);
        all
    };
    let big = format!(r#"{{"UserID":"victim","pad":"{}"}}"#, "x".repeat(70_000));
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        (KICK, b"".to_vec(), 60003),
        (KICK, b"{".to_vec(), 60003),
        (KICK, b"UserID=alice".to_vec(), 60003),
        (KICK, b"{\"UserID\":\"al\xffice\"}".to_vec(), 60003),
        (KICK, b"[]".to_vec(), 70402),
        (KICK, b"{}".to_vec(), 70402),
        (KICK, br#"{"UserID":5}"#.to_vec(), 60015),
        (KICK, br#"{"UserID":null}"#.to_vec(), 60015),
        (KICK, br#"{"UserID":["alice"]}"#.to_vec(), 60015),
        (KICK, br#"{"UserID":"a b"}"#.to_vec(), 70402),
        (
            KICK,
            format!(r#"{{"UserID":"{}"}}"#, "a".repeat(33)).into_bytes(),
            70402,
        ),
        (
            KICK,
            br#"{"UserID":"alice","Identifier":"bob"}"#.to_vec(),
            70402,
        ),
        (KICK, big.clone().into_bytes(), 70402),
        (IMPORT, big.into_bytes(), 70402),
        (IMPORT, br#"{"UserID":"victim","Nick":5}"#.to_vec(), 70402),
        (
            IMPORT,
            br#"{"UserID":"victim","FaceUrl":[]}"#.to_vec(),
            70402,
        ),
        (IMPORT, br#"{"Identifier":7}"#.to_vec(), 60015),
        (MULTI_IMPORT, br#"{}"#.to_vec(), 70402),
        (MULTI_IMPORT, br#"{"Accounts":"victim"}"#.to_vec(), 60015),
        (
            MULTI_IMPORT,
            br#"{"Accounts":["victim",1]}"#.to_vec(),
            60015,
        ),
        (MULTI_IMPORT, br#"{"Accounts":[]}"#.to_vec(), 70402),
        (
            MULTI_IMPORT,
            json!({ "Accounts": many(101) }).to_string().into_bytes(),
            70402,
        ),
        (
            DELETE,
            br#"{"DeleteItem":{"UserID":"alice"}}"#.to_vec(),
            60015,
        ),
        (DELETE, br#"{"DeleteItem":["alice"]}"#.to_vec(), 60015),
        (
            DELETE,
            br#"{"DeleteItem":[{"UserID":"alice"},{"UserID":3}]}"#.to_vec(),
            60015,
        ),
        (
            DELETE,
            br#"{"DeleteItem":[{"UserID":"alice"},{}]}"#.to_vec(),
            70402,
        ),
        (
            DELETE,
            json!({ "DeleteItem": alice_and(items(100)) })
                .to_string()
                .into_bytes(),
            70402,
        ),
        (CHECK, br#"{"CheckItem":[1]}"#.to_vec(), 60015),
        (
            CHECK,
            json!({ "CheckItem": items(101) }).to_string().into_bytes(),
            70402,
        ),
        (ONLINE, br#"{"To_Account":"alice"}"#.to_vec(), 60015),
        (ONLINE, br#"{"To_Account":[1]}"#.to_vec(), 60015),
        (
            ONLINE,
            json!({ "To_Account": many(501) }).to_string().into_bytes(),
            70402,
        ),
        (
            ONLINE,
            br#"{"To_Account":["alice"],"IsNeedDetail":2}"#.to_vec(),
            70402,
        ),
        (
            ONLINE,
            br#"{"To_Account":["alice"],"IsNeedDetail":"1"}"#.to_vec(),
            70402,
        ),
    ];
    for (api, body, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let a = rest
            .post(&format!("{api}?{}", rest.query()), body)
            .await
            .checked();
        assert_eq!(a.code(), code, "{api} {shown}: {}", a.json);
    }
    // Nothing happened: alice is still online and imported, never kicked; no victim exists.
    expect_untouched(&mut alice).await;
    let s = store(&server);
    assert!(s.account_exists(APP, "alice").unwrap());
    assert_eq!(s.kicked_at(APP, "alice").unwrap(), None);
    assert!(s.kicks(APP).unwrap().is_empty());
    let victims: Vec<String> = many(101).into_iter().chain(["victim".into()]).collect();
    assert!(s.accounts_exist(APP, &victims).unwrap().iter().all(|e| !e));
    // The largest valid batches pass.
    let a = rest
        .call(MULTI_IMPORT, json!({ "Accounts": many(100) }))
        .await;
    assert_eq!((a.code(), &a.json["FailAccounts"]), (0, &json!([])));
    let a = rest.call(ONLINE, json!({ "To_Account": many(500) })).await;
    assert_eq!(a.code(), 0);
    assert_eq!(a.json["QueryResult"].as_array().unwrap().len(), 100);
    assert_eq!(a.json["ErrorList"].as_array().unwrap().len(), 400);
}

#[tokio::test]
async fn import_check_and_delete_round_trip() {
    let (server, rest) = start(|_| {}).await;
    let a = rest
        .call(
            IMPORT,
            json!({"UserID": "alice", "Nick": "Alice", "FaceUrl": "https://x/a.png"}),
        )
        .await;
    assert_eq!(a.code(), 0);
    // Importing again is fine; older clients send Identifier.
    assert_eq!(
        rest.call(IMPORT, json!({"UserID": "alice"})).await.code(),
        0
    );
    assert_eq!(
        rest.call(IMPORT, json!({"Identifier": "old_style"}))
            .await
            .code(),
        0
    );

    let a = rest
        .call(
            MULTI_IMPORT,
            json!({"Accounts": ["bob", "bad id", "carol", "", "alice"]}),
        )
        .await;
    assert_eq!(a.code(), 0);
    assert_eq!(a.json["FailAccounts"], json!(["bad id", ""]));

    let a = rest
        .call(
            CHECK,
            json!({"CheckItem": [
                {"UserID": "alice"}, {"UserID": "bob"}, {"Identifier": "old_style"},
                {"UserID": "dave"}, {"UserID": "bad id"}
            ]}),
        )
        .await;
    assert_eq!(a.code(), 0);
    let items = a.json["ResultItem"].as_array().unwrap();
    let summary: Vec<(&str, u64, &str)> = items
        .iter()
        .map(|i| {
            (
                i["UserID"].as_str().unwrap(),
                i["ResultCode"].as_u64().unwrap(),
                i["AccountStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("alice", 0, "Imported"),
            ("bob", 0, "Imported"),
            ("old_style", 0, "Imported"),
            ("dave", 0, "NotImported"),
            ("bad id", 70402, "NotImported"),
        ]
    );
    assert_eq!(items[0]["ResultInfo"], "");
    assert!(!items[4]["ResultInfo"].as_str().unwrap().is_empty());

    let a = rest
        .call(
            DELETE,
            json!({"DeleteItem": [{"UserID": "bob"}, {"UserID": "dave"}, {"UserID": "bad id"}, {"Identifier": "carol"}]}),
        )
        .await;
    assert_eq!(a.code(), 0);
    let codes: Vec<(&str, u64)> = a.json["ResultItem"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["UserID"].as_str().unwrap(),
                i["ResultCode"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [("bob", 0), ("dave", 70107), ("bad id", 70402), ("carol", 0)]
    );
    assert_eq!(rest.status_of("bob").await, "NotImported");
    assert_eq!(rest.status_of("carol").await, "NotImported");
    assert_eq!(rest.status_of("alice").await, "Imported");
    let s = store(&server);
    assert!(!s.account_exists(APP, "bob").unwrap());
    assert!(
        s.kicked_at(APP, "bob").unwrap().is_some(),
        "a deletion revokes UserSigs"
    );
    assert_eq!(
        s.kicked_at(APP, "dave").unwrap(),
        None,
        "nothing to delete, nothing revoked"
    );
}

#[tokio::test]
async fn kick_kicks_every_instance_of_the_user_only() {
    let (server, rest) = start(|_| {}).await;
    let mut tab1 = online(&server, "alice").await;
    let mut tab2 = online(&server, "alice").await;
    let mut desktop = try_login(&server, "alice", &sig("alice"), Platform::Mac)
        .await
        .unwrap();
    let mut bob = online(&server, "bob").await;
    let a = rest.call(KICK, json!({"UserID": "alice"})).await;
    assert_eq!(a.code(), 0, "{}", a.json);
    for ws in [&mut tab1, &mut tab2, &mut desktop] {
        expect_rest_kick(ws).await;
    }
    expect_untouched(&mut bob).await;
    assert!(server.state.registry().instances("alice").is_empty());
    assert_eq!(server.state.registry().instances("bob").len(), 1);
    // Kicking someone with nobody online is fine too (the account exists).
    assert_eq!(
        rest.call(KICK, json!({"Identifier": "alice"})).await.code(),
        0
    );
}

#[tokio::test]
async fn kick_revokes_usersigs_up_to_its_second_and_a_new_one_works() {
    let (server, rest) = start(|_| {}).await;
    let old = sig_at("alice", now() - 30);
    let _alice = try_login(&server, "alice", &old, Platform::Web)
        .await
        .unwrap();
    let before = now();
    let a = rest.call(KICK, json!({"UserID": "alice"})).await;
    let after = now();
    assert_eq!(a.code(), 0);
    // Durable before the answer, and answered only once its second was over.
    let k = store(&server)
        .kicked_at(APP, "alice")
        .unwrap()
        .expect("kick time stored");
    assert!(before <= k && k < after, "{before} <= {k} < {after}");
    assert_eq!(server.state.kicked_at("alice"), Some(k));
    // A UserSig generated right after the answer works...
    let fresh = sig_at("alice", now());
    let mut ws = try_login(&server, "alice", &fresh, Platform::Web)
        .await
        .unwrap();
    // ...while every one issued at or before the kick's second is refused as expired.
    for time in [k - 30, k - 1, k] {
        assert_eq!(
            try_login(&server, "alice", &sig_at("alice", time), Platform::Web)
                .await
                .err(),
            Some(70001),
            "TLS.time {time}, kick at {k}"
        );
    }
    assert_eq!(
        try_login(&server, "alice", &old, Platform::Web).await.err(),
        Some(70001)
    );
    expect_untouched(&mut ws).await;
    // Another user's UserSigs are unaffected.
    assert!(try_login(&server, "bob", &sig_at("bob", k), Platform::Web)
        .await
        .is_ok());
}

/// A UserSig dated ahead of the server's clock cannot outlive a kick: within the allowed
/// skew it is revoked like any earlier one, beyond it it never logs in at all.
#[tokio::test]
async fn a_future_dated_usersig_does_not_survive_a_kick() {
    use timd::kicks::USERSIG_MAX_FUTURE_SECS as SKEW;
    let (server, rest) = start(|_| {}).await;
    // The edge: the kick falls in the very second the UserSig was accepted, so the UserSig's
    // TLS.time (that second plus the skew) is exactly the last one the kick revokes. A busy
    // machine may push the kick into the next second (then it would revoke the UserSig with
    // a second to spare): that attempt does not count, another user tries again.
    let mut attempt = 0;
    let (user, ahead) = loop {
        attempt += 1;
        let user = format!("alice{attempt}");
        // Start of a second, so the login and the kick share it.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        tokio::time::sleep(Duration::from_nanos(
            1_000_000_000 - u64::from(wall.subsec_nanos()) + 5_000_000,
        ))
        .await;
        let t = now();
        let ahead = sig_at(&user, t + SKEW);
        let mut ws = try_login(&server, &user, &ahead, Platform::Web)
            .await
            .unwrap();
        assert_eq!(rest.call(KICK, json!({"UserID": user})).await.code(), 0);
        expect_rest_kick(&mut ws).await;
        let k = server.state.kicked_at(&user).expect("kick recorded");
        if k == t + SKEW {
            break (user, ahead);
        }
        println!("attempt {attempt}: the kick fell in a later second ({k} > {t} + {SKEW})");
        assert!(
            attempt < 5,
            "5 attempts, none with the login and the kick in one second"
        );
    };
    assert_eq!(
        try_login(&server, &user, &ahead, Platform::Web).await.err(),
        Some(70001),
        "the same future-dated UserSig after the kick"
    );
    let far = sig_at(&user, now() + 30);
    assert_eq!(
        try_login(&server, &user, &far, Platform::Web).await.err(),
        Some(70003)
    );
    assert!(try_login(&server, &user, &sig(&user), Platform::Web)
        .await
        .is_ok());
}

/// A returning user's login takes two shortcuts: its unchanged UserSig is remembered (no
/// base64, inflate, JSON or HMAC again) and its account is known to exist (no store round
/// trip: it logs in while the store thread is busy). Neither lets a kicked or deleted
/// user's UserSig back in, and a deletion makes the account unknown, so a new UserSig
/// registers it again.
#[tokio::test]
async fn remembered_usersigs_and_known_accounts_outlive_no_kick_and_no_deletion() {
    let (server, rest) = start(|_| {}).await;
    let checker = server.state.app(APP).unwrap().checker();
    let old = sig_at("alice", now() - 30);
    drop(
        try_login(&server, "alice", &old, Platform::Web)
            .await
            .unwrap(),
    );
    assert_eq!(checker.remembered_count(), 1);
    let (release, held) = hold_store(&server).await;
    let mut tab = tokio::time::timeout(
        Duration::from_secs(10),
        try_login(&server, "alice", &old, Platform::Web),
    )
    .await
    .expect("a returning login waited for the store")
    .unwrap();
    drop(release);
    held.await.unwrap().unwrap();
    assert_eq!(
        checker.remembered_count(),
        1,
        "the same UserSig, remembered once"
    );
    // The kick revokes the remembered UserSig like any issued before it.
    assert_eq!(rest.call(KICK, json!({"UserID": "alice"})).await.code(), 0);
    expect_rest_kick(&mut tab).await;
    assert_eq!(
        try_login(&server, "alice", &old, Platform::Web).await.err(),
        Some(70001)
    );
    // A deletion: the remembered UserSig is revoked, the account forgotten...
    let newer = sig_at("alice", now());
    let mut tab = try_login(&server, "alice", &newer, Platform::Web)
        .await
        .unwrap();
    let a = rest
        .call(DELETE, json!({"DeleteItem": [{"UserID": "alice"}]}))
        .await;
    assert_eq!(a.json["ResultItem"][0]["ResultCode"], 0, "{}", a.json);
    expect_rest_kick(&mut tab).await;
    assert_eq!(
        try_login(&server, "alice", &newer, Platform::Web)
            .await
            .err(),
        Some(70001)
    );
    assert!(!store(&server).account_exists(APP, "alice").unwrap());
    // ...so the next login with a new UserSig registers it again, durably.
    let _tab = try_login(&server, "alice", &sig_at("alice", now()), Platform::Web)
        .await
        .unwrap();
    assert!(store(&server).account_exists(APP, "alice").unwrap());
}

#[tokio::test]
async fn kick_of_an_unknown_account_is_70107_and_records_nothing() {
    let (server, rest) = start(|_| {}).await;
    let a = rest.call(KICK, json!({"UserID": "ghost"})).await;
    assert_eq!(a.code(), 70107);
    assert!(a.json["ErrorInfo"].as_str().unwrap().contains("ghost"));
    assert_eq!(store(&server).kicked_at(APP, "ghost").unwrap(), None);
    assert!(try_login(&server, "ghost", &sig("ghost"), Platform::Web)
        .await
        .is_ok());
    // Once logged in, the account exists and can be kicked.
    assert_eq!(rest.call(KICK, json!({"UserID": "ghost"})).await.code(), 0);
}

#[tokio::test]
async fn delete_kicks_online_sessions_and_only_a_new_usersig_recreates_the_account() {
    let (server, rest) = start(|_| {}).await;
    let old = sig_at("alice", now() - 10);
    let mut tab = try_login(&server, "alice", &old, Platform::Web)
        .await
        .unwrap();
    let mut bob = online(&server, "bob").await;
    let a = rest
        .call(DELETE, json!({"DeleteItem": [{"UserID": "alice"}]}))
        .await;
    assert_eq!(a.json["ResultItem"][0]["ResultCode"], 0, "{}", a.json);
    expect_rest_kick(&mut tab).await;
    expect_untouched(&mut bob).await;
    assert_eq!(rest.status_of("alice").await, "NotImported");
    // The deleted account's UserSigs are revoked: they cannot bring it back...
    assert_eq!(
        try_login(&server, "alice", &old, Platform::Web).await.err(),
        Some(70001)
    );
    assert_eq!(rest.status_of("alice").await, "NotImported");
    assert_eq!(
        rest.call(KICK, json!({"UserID": "alice"})).await.code(),
        70107
    );
    // ...a newly generated one does, as on Tencent (first login registers).
    let _tab = try_login(&server, "alice", &sig("alice"), Platform::Web)
        .await
        .unwrap();
    assert_eq!(rest.status_of("alice").await, "Imported");
    // Re-importing a deleted account does not revive its old UserSigs either.
    rest.call(DELETE, json!({"DeleteItem": [{"UserID": "bob"}]}))
        .await;
    expect_rest_kick(&mut bob).await;
    assert_eq!(rest.call(IMPORT, json!({"UserID": "bob"})).await.code(), 0);
    assert_eq!(
        try_login(&server, "bob", &sig_at("bob", now() - 5), Platform::Web)
            .await
            .err(),
        Some(70001)
    );
}

#[tokio::test]
async fn query_online_status_reports_instances_platforms_and_unknown_accounts() {
    let (server, rest) = start(|_| {}).await;
    let tab1 = online(&server, "alice").await;
    let tab2 = online(&server, "alice").await;
    let pc = try_login(&server, "alice", &sig("alice"), Platform::Windows)
        .await
        .unwrap();
    rest.call(IMPORT, json!({"UserID": "bob"})).await;
    let ask = |detail: Option<u8>| {
        let mut body = json!({"To_Account": ["alice", "bob", "carol", "bad id!"]});
        if let Some(d) = detail {
            body["IsNeedDetail"] = d.into();
        }
        body
    };
    let a = rest.call(ONLINE, ask(None)).await;
    assert_eq!(
        a.json["QueryResult"],
        json!([
            {"To_Account": "alice", "Status": "Online"},
            {"To_Account": "bob", "Status": "Offline"},
        ])
    );
    assert_eq!(
        a.json["ErrorList"],
        json!([
            {"To_Account": "carol", "ErrorCode": 70107},
            {"To_Account": "bad id!", "ErrorCode": 70402},
        ])
    );
    assert_eq!(
        rest.call(ONLINE, ask(Some(0))).await.json["QueryResult"],
        a.json["QueryResult"]
    );
    let a = rest.call(ONLINE, ask(Some(1))).await;
    assert_eq!(
        a.json["QueryResult"],
        json!([
            {"To_Account": "alice", "Status": "Online", "Detail": [
                {"Platform": "Web", "Status": "Online"},
                {"Platform": "Web", "Status": "Online"},
                {"Platform": "PC", "Status": "Online"},
            ]},
            {"To_Account": "bob", "Status": "Offline", "Detail": []},
        ])
    );
    // A closed socket is not online, even while its slot waits for a resume.
    drop(tab1);
    drop(pc);
    let detail_len = || async {
        let a = rest
            .call(ONLINE, json!({"To_Account": ["alice"], "IsNeedDetail": 1}))
            .await;
        a.json["QueryResult"][0]["Detail"].as_array().unwrap().len()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while detail_len().await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed sockets still online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tab2);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = rest.call(ONLINE, json!({"To_Account": ["alice"]})).await;
        if a.json["QueryResult"][0]["Status"] == "Offline" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", a.json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn over_the_rate_limit_calls_get_60011_and_have_no_effect() {
    let (server, rest) = start(|c| c.rest_rate_limit = 5).await;
    // Calls that fail authentication do not use the app's budget.
    let forged = format!(
        "{IMPORT}?sdkappid={APP}&identifier={ADMIN}&usersig={}&random=1",
        tim_usersig::generate(APP, "not-the-key", ADMIN, now(), 3600)
    );
    for _ in 0..20 {
        assert_eq!(
            rest.post(&forged, r#"{"UserID":"x"}"#)
                .await
                .checked()
                .code(),
            70009
        );
    }
    let started = std::time::Instant::now();
    let calls = (0..20).map(|i| {
        let rest = rest.clone();
        tokio::spawn(async move {
            let user = format!("u{i}");
            let code = rest.call(IMPORT, json!({"UserID": user})).await.code();
            (user, code)
        })
    });
    let mut ok = Vec::new();
    let mut limited = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            (user, 0) => ok.push(user),
            (user, 60011) => limited.push(user),
            other => panic!("unexpected {other:?}"),
        }
    }
    // A burst of one second's worth, plus at most what refilled meanwhile.
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(ok.len() >= 5 && ok.len() <= 5 + refilled, "ok: {ok:?}");
    assert!(!limited.is_empty());
    let s = store(&server);
    assert!(s.accounts_exist(APP, &ok).unwrap().iter().all(|e| *e));
    assert!(
        s.accounts_exist(APP, &limited).unwrap().iter().all(|e| !e),
        "nothing half-done"
    );
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        rest.call(IMPORT, json!({"UserID": "later"})).await.code(),
        0
    );
}

#[tokio::test]
async fn a_rate_limited_kick_kicks_no_one() {
    let (server, rest) = start(|c| c.rest_rate_limit = 1).await;
    // The status call spends the one token of the second; a kick that only got through
    // because a second had passed meanwhile (a loaded machine) is tried again on a new user.
    for attempt in 1..=5 {
        let user = format!("zed{attempt}");
        let mut zed = online(&server, &user).await;
        let drained = std::time::Instant::now();
        assert_eq!(rest.status_of(&user).await, "Imported");
        let a = rest.call(KICK, json!({"UserID": user})).await;
        if a.code() == 0 {
            assert!(
                drained.elapsed() >= Duration::from_millis(900),
                "a second kick within the second passed: {}",
                a.json
            );
            continue;
        }
        assert_eq!(a.code(), 60011, "{}", a.json);
        expect_untouched(&mut zed).await;
        assert_eq!(store(&server).kicked_at(APP, &user).unwrap(), None);
        assert_eq!(server.state.kicked_at(&user), None);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(rest.call(KICK, json!({"UserID": user})).await.code(), 0);
        expect_rest_kick(&mut zed).await;
        return;
    }
    panic!("every attempt took over a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_kicks_all_land_and_kick_each_instance_once() {
    let (server, rest) = start(|_| {}).await;
    let users: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    let before = now();
    let mut sockets = Vec::new();
    for user in &users {
        for _ in 0..2 {
            sockets.push(
                try_login(&server, user, &sig_at(user, before - 1), Platform::Web)
                    .await
                    .unwrap(),
            );
        }
    }
    let kicks: Vec<_> = (0..40)
        .map(|i| {
            let rest = rest.clone();
            let user = users[i % users.len()].clone();
            tokio::spawn(async move { rest.call(KICK, json!({"UserID": user})).await.code() })
        })
        .collect();
    for kick in kicks {
        assert_eq!(kick.await.unwrap(), 0);
    }
    for ws in &mut sockets {
        expect_rest_kick(ws).await;
    }
    let s = store(&server);
    for user in &users {
        let k = s.kicked_at(APP, user).unwrap().expect("kick time stored");
        assert!(k >= before);
        assert_eq!(
            server.state.kicked_at(user),
            Some(k),
            "cache matches the file"
        );
        assert_eq!(
            try_login(&server, user, &sig_at(user, before), Platform::Web)
                .await
                .err(),
            Some(70001)
        );
    }
    assert_eq!(server.state.registry().online_count(), 0);
}

#[tokio::test]
async fn kicking_the_admin_revokes_its_own_usersigs() {
    let (_server, rest) = start(|_| {}).await;
    assert_eq!(rest.call(IMPORT, json!({"UserID": ADMIN})).await.code(), 0);
    let old = rest.admin_sig(5);
    assert_eq!(rest.call(KICK, json!({"UserID": ADMIN})).await.code(), 0);
    let url = format!("{CHECK}?sdkappid={APP}&identifier={ADMIN}&usersig={old}&random=1");
    let body = r#"{"CheckItem":[{"UserID":"x"}]}"#;
    assert_eq!(rest.post(&url, body).await.checked().code(), 70001);
    // A UserSig generated after the kick's answer works.
    assert_eq!(
        rest.call(CHECK, serde_json::from_str::<Value>(body).unwrap())
            .await
            .code(),
        0
    );
}

#[tokio::test]
async fn a_caller_hanging_up_mid_kick_still_gets_the_kick_applied() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, rest) = start(|_| {}).await;
    let mut alice = online(&server, "alice").await;
    // Hold the store thread, so the kick is still waiting for its write when the caller goes.
    let (release, busy) = hold_store(&server).await;
    let body = r#"{"UserID":"alice"}"#;
    let request = format!(
        "POST {KICK}?{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        rest.query(),
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    // The kick's write is queued behind the held job: the kick is under way.
    eventually("the kick waits for the store", || {
        server.state.store().queued() == 1
    })
    .await;
    // The caller hangs up; the server ends the exchange without an answer, mid-kick.
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection of a caller that hung up")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "",
        "no answer: the caller left before the kick was done"
    );
    assert_eq!(server.state.kicked_at("alice"), None, "not done yet");
    drop(release);
    busy.await.unwrap().unwrap();
    // The write happened, and so did everything that must follow it.
    expect_rest_kick(&mut alice).await;
    let k = store(&server)
        .kicked_at(APP, "alice")
        .unwrap()
        .expect("durable");
    assert_eq!(server.state.kicked_at("alice"), Some(k));
    assert_eq!(
        try_login(&server, "alice", &sig_at("alice", k), Platform::Web)
            .await
            .err(),
        Some(70001)
    );
}
