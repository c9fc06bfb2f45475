//! Where a cluster keeps things in Redis (the layout is documented in `docs/cluster.md`).
//!
//! Everything about one user lives under one hash tag, `{<SDKAppID>:<UserID>}`, so every
//! decision script touches keys of one Redis Cluster slot. UserIDs are `A-Z a-z 0-9 _ -`
//! only, so they cannot break out of the tag.

/// The four keys of one user, in the order every script takes them (`lua/prelude.lua`):
/// the user hash (account, kick time, fencing counter), the login-order zset, the slot
/// hash and the tombstone hash.
pub fn user_keys(sdkappid: u32, user: &str) -> [String; 4] {
    let tag = format!("tim:{{{sdkappid}:{user}}}");
    [
        format!("{tag}:u"),
        format!("{tag}:i"),
        format!("{tag}:s"),
        format!("{tag}:t"),
    ]
}

/// A user's outbox: writes to other slots (kick notices for other nodes' streams) that a
/// script handed back to its node and that node has not confirmed yet (`lua/prelude.lua`,
/// `later`). Same hash tag as [`user_keys`]: the script's fifth key.
pub fn user_outbox(sdkappid: u32, user: &str) -> String {
    format!("tim:{{{sdkappid}:{user}}}:o")
}

/// An app's login settings: the hash (version, web, other, policy, enforce) and the history
/// list, under one hash tag (one slot), and the hash of the version each node applied.
pub fn settings_keys(sdkappid: u32) -> [String; 3] {
    let tag = format!("tim:app:{{{sdkappid}}}");
    [
        format!("{tag}:settings"),
        format!("{tag}:history"),
        format!("{tag}:applied"),
    ]
}

/// Live nodes: a sorted set of node id -> until when (unix ms) its lease runs.
pub const NODES: &str = "tim:nodes";

/// Where a settings change is announced: `<sdkappid>|<version>`.
pub const SETTINGS_CHANNEL: &str = "tim:settings";

/// The stream a node reads (with a cursor) for kicks of its sessions decided elsewhere:
/// entries `n` = `kind|session|reason`, appended by the deciding node after its script (`later` in `prelude.lua`).
pub fn node_stream(node: &str) -> String {
    format!("tim:node:{node}:k")
}

/// The users (`APP:USER`) a node holds slots of: what a live node cleans up once the node
/// is dead (`reap.lua`).
pub fn node_users(node: &str) -> String {
    format!("tim:node:{node}:users")
}

/// Taken (SET NX PX) by the node that reaps a dead node, so that one node does it.
pub fn node_reaping(node: &str) -> String {
    format!("tim:node:{node}:reaping")
}

/// An app's State.StateChange outbox: a stream of events waiting for delivery
/// (`cluster/callbacks.rs`; also appended by `prelude.lua`'s `report_timeout`, which spells
/// the same key).
pub fn callback_stream(sdkappid: u32) -> String {
    format!("tim:cb:{{{sdkappid}}}")
}

/// The node delivering an app's callbacks (SET PX, renewed every second).
pub fn callback_owner(sdkappid: u32) -> String {
    format!("tim:cb:{{{sdkappid}}}:owner")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hash_tag_per_user() {
        let keys = user_keys(1400000000, "alice");
        for key in &keys {
            assert!(key.starts_with("tim:{1400000000:alice}:"), "{key}");
        }
        assert_ne!(user_keys(1, "alice")[0], user_keys(2, "alice")[0]);
        assert!(user_outbox(1400000000, "alice").starts_with("tim:{1400000000:alice}:"));
        assert_eq!(node_stream("ab12"), "tim:node:ab12:k");
        assert_eq!(node_users("ab12"), "tim:node:ab12:users");
        assert_eq!(callback_stream(7), "tim:cb:{7}");
    }
}
