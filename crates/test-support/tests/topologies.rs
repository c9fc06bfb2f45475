//! The Redis topologies the cluster tests run on work as deployments expect: a Sentinel group
//! promotes its replica when the primary dies, and a Redis Cluster's shard fails over to its
//! replica, with the data written before (`appendfsync always`, replicated) still there.

use tim_test_support::{ClusterGroup, SentinelGroup};

#[test]
fn sentinels_promote_the_replica_when_the_primary_dies() {
    let mut group = SentinelGroup::start();
    assert!(
        group.url().starts_with("redis+sentinel://127.0.0.1:"),
        "{}",
        group.url()
    );
    let first = group.primary_port();
    assert_eq!(group.primary().command(&["SET", "k", "v"]), "OK");
    // Acknowledged by the replica before the primary dies: the promise WAIT makes.
    assert_eq!(group.primary().command(&["WAIT", "1", "2000"]), "1");
    let second = group.fail_over();
    assert_ne!(first, second);
    assert_eq!(group.primary().command(&["GET", "k"]), "v");
}

#[test]
fn a_redis_cluster_shard_fails_over_to_its_replica() {
    let mut group = ClusterGroup::start();
    let key = "tim:{1400000000:alice}:u";
    let first = group.primary_of(key);
    let primary = group
        .servers
        .iter()
        .find(|s| s.port() == first)
        .expect("the shard's primary");
    assert_eq!(primary.command(&["SET", key, "v"]), "OK");
    assert_eq!(primary.command(&["WAIT", "1", "2000"]), "1");
    let second = group.fail_over_shard_of(key);
    assert_ne!(first, second);
    let promoted = group
        .servers
        .iter()
        .find(|s| s.port() == second)
        .expect("the new primary");
    assert_eq!(promoted.command(&["GET", key]), "v");
}
