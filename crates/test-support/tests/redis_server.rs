//! The Redis fixture runs a real redis-server with the persistence the cluster tests rely
//! on: every acknowledged write survives a SIGTERM and a SIGKILL, on the same port.

use tim_test_support::RedisServer;

#[test]
fn writes_survive_stop_and_kill_on_the_same_port() {
    let mut redis = RedisServer::start();
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    assert!(redis.url().ends_with("/0"));
    assert_eq!(
        redis.command(&["CONFIG", "GET", "appendfsync"]),
        "appendfsync\nalways"
    );
    assert_eq!(
        redis.command(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nyes"
    );
    assert_eq!(
        redis.command(&["CONFIG", "GET", "save"]),
        "save",
        "no snapshots"
    );
    assert_eq!(redis.command(&["SET", "user:{alice}", "v1"]), "OK");
    let port = redis.port();

    redis.stop();
    assert!(!redis.is_running());
    assert!(
        std::net::TcpStream::connect(redis.addr()).is_err(),
        "nothing listens after stop"
    );
    redis.start_again();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "user:{alice}"]), "v1");

    // A crash right after the acknowledgement: appendfsync always already wrote it.
    assert_eq!(redis.command(&["INCR", "fence:{alice}"]), "1");
    redis.kill();
    assert!(redis.pid().is_none());
    redis.start_again();
    assert_eq!(redis.command(&["GET", "fence:{alice}"]), "1");
    assert_eq!(redis.command(&["DBSIZE"]), "2");
}

#[test]
fn commands_reach_the_server_for_fault_injection() {
    let redis = RedisServer::start();
    // A subscriber on its own connection, then drop every pub/sub connection.
    let mut sub = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "SUBSCRIBE", "node:1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while redis.command(&["PUBSUB", "NUMSUB", "node:1"]) != "node:1\n1" {
        assert!(std::time::Instant::now() < deadline, "subscriber not seen");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]), "1");
    assert_eq!(redis.command(&["PUBSUB", "NUMSUB", "node:1"]), "node:1\n0");
    let _ = sub.kill();
    let _ = sub.wait();
    assert!(
        redis
            .command(&["NO-SUCH-COMMAND"])
            .starts_with("ERR unknown command"),
        "errors come back as text"
    );
}
