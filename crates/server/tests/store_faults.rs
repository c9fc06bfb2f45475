//! REST calls against a store that fails underneath them (a read-only file, a failing
//! statement, a savepoint that cannot be taken): the call answers 70500, nothing changes —
//! neither the file nor who is online — and the same call succeeds once the store heals.

mod common;
mod rest_client;

use common::*;
use rest_client::*;
use serde_json::json;
use tim_proto::{close, KickReason, ServerFrame};
use timd::store::FaultPoint;
use timd::Store;

/// What is durable, read through a second connection on the live file.
fn file(server: &Server) -> Store {
    Store::open_in(&server.state.config().data_dir, APP).unwrap()
}

async fn sql(server: &Server, batch: &'static str) {
    server
        .state
        .store()
        .call(move |s| Ok(s.connection().execute_batch(batch)?))
        .await
        .unwrap();
}

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
async fn a_kick_on_a_read_only_store_is_70500_and_kicks_no_one() {
    let server = Server::start(|_| {}).await;
    let rest = Rest::new(server.addr, APP, KEY);
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "tab").await;
    // The file cannot be written any more (as on a read-only or full volume).
    sql(&server, "PRAGMA query_only = ON").await;
    let answer = rest.call(KICK, json!({ "UserID": "alice" })).await;
    assert_eq!(answer.code(), 70500, "{}", answer.json);
    expect_untouched(&mut ws).await;
    assert_eq!(
        server.state.kicked_at("alice"),
        None,
        "no revocation in memory"
    );
    assert_eq!(file(&server).kicked_at(APP, "alice").unwrap(), None);
    // Nothing can run on that connection now (not even the statement that would undo
    // `query_only`): later calls fail the same way, and the session is still served.
    let answer = rest.call(KICK, json!({ "UserID": "alice" })).await;
    assert_eq!(answer.code(), 70500, "{}", answer.json);
    send(&mut ws, &tim_proto::ClientFrame::Ping).await;
    assert_eq!(recv(&mut ws).await, ServerFrame::Pong);
}

/// A deletion whose kick record fails, in a batch whose savepoint cannot be taken: the
/// account must not be deleted behind a 70500 (its sessions would stay online, and a retry
/// would find nothing to delete).
#[tokio::test]
async fn a_delete_that_fails_halfway_deletes_nothing_and_a_retry_works() {
    let server = Server::start(|_| {}).await;
    let rest = Rest::new(server.addr, APP, KEY);
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "tab").await;
    sql(
        &server,
        "CREATE TEMP TRIGGER kicks_fail BEFORE INSERT ON kicks
         BEGIN SELECT RAISE(FAIL, 'simulated disk full'); END;",
    )
    .await;
    server
        .state
        .store()
        .inject_faults(&[FaultPoint::Savepoint(0)]);
    let delete = json!({ "DeleteItem": [{ "UserID": "alice" }] });
    let answer = rest.call(DELETE, delete.clone()).await;
    assert_eq!(answer.code(), 70500, "{}", answer.json);
    assert!(
        file(&server).account_exists(APP, "alice").unwrap(),
        "not deleted"
    );
    expect_untouched(&mut ws).await;
    // Without the savepoint fault, the failing kick record still undoes the deletion.
    let answer = rest.call(DELETE, delete.clone()).await;
    assert_eq!(answer.code(), 70500, "{}", answer.json);
    assert!(
        file(&server).account_exists(APP, "alice").unwrap(),
        "not deleted"
    );
    expect_untouched(&mut ws).await;
    sql(&server, "DROP TRIGGER kicks_fail").await;
    let answer = rest.call(DELETE, delete).await;
    assert_eq!(answer.code(), 0, "{}", answer.json);
    assert_eq!(answer.json["ResultItem"][0]["ResultCode"], 0);
    assert!(!file(&server).account_exists(APP, "alice").unwrap());
    expect_rest_kick(&mut ws).await;
}
