//! What a chaos run recorded, and the rules it is checked against afterwards. Pure: the
//! checks take the history and return what broke a rule, so they are tested on histories
//! written by hand (each rule flags the history that breaks it), apart from any run.

use std::collections::HashMap;
use std::time::Duration;

use tim_proto::KickReason;

/// An instance of the run: whose, which kind of slot it takes.
#[derive(Clone, Copy, Debug)]
pub struct Instance {
    pub user: usize,
    /// Web instances count against the Web limit; the others share one native slot (the
    /// run's policy, `dual`, allows one mobile-or-desktop device beside Web).
    pub web: bool,
}

/// One thing that happened, as the clients, the admin and the fault injector saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A `login` call started, with a UserSig issued at `sig_time` (unix s).
    LoginSent {
        inst: usize,
        sig_time: u64,
    },
    LoginOk {
        inst: usize,
    },
    LoginFailed {
        inst: usize,
        code: u32,
    },
    /// The instance is no longer logged in by its own doing (`logout()` settled).
    LoggedOut {
        inst: usize,
    },
    Kicked {
        inst: usize,
        reason: KickReason,
    },
    /// `SDK_NOT_READY` (after a kick, a logout, or a session that ended).
    NotReady {
        inst: usize,
    },
    /// `NET_STATE_CHANGE`: connected or not.
    Net {
        inst: usize,
        connected: bool,
    },
    /// The admin sent a REST kick of `user` at wall second `wall`.
    KickSent {
        user: usize,
        wall: u64,
    },
    /// ... and it was acknowledged (`ErrorCode` 0).
    KickAck {
        user: usize,
        wall: u64,
    },
    /// A raw session's end was acknowledged (`logout_ok`, or its REST kick): its ticket is dead.
    TicketEnded {
        ticket: usize,
    },
    /// A resume with that ticket was answered: `accepted` means `resume_ok`.
    ResumeAnswered {
        ticket: usize,
        accepted: bool,
    },
    /// A fault began / ended (`name` says which, and on what).
    FaultStart {
        name: String,
    },
    FaultEnd {
        name: String,
    },
}

/// An entry: when (since the run's start) and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub at: Duration,
    pub op: Op,
}

/// The rules' parameters.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub web_limit: usize,
    pub native_limit: usize,
    /// How long more instances than the limits may be online while every one of them is
    /// connected and no fault runs (a kick in transit; the documented bound).
    pub kick_bound: Duration,
    /// How far before a kicked instance's login its cause may lie (a login sent earlier
    /// may be decided later, so the newcomer can still be the earlier one).
    pub cause_slack: Duration,
}

/// The verdict of one rule: how many cases it looked at, and what broke it.
#[derive(Debug, Default)]
pub struct Verdict {
    pub checked: usize,
    pub broken: Vec<String>,
}

/// Never more instances online than the limits allow, beyond `kick_bound` counted only while
/// every over-limit instance is connected and no fault runs (a disconnected instance learns
/// its kick when it comes back; a frozen or dead node cannot tell its clients anything).
pub fn limits(history: &[Entry], instances: &[Instance], rules: &Rules) -> Verdict {
    let mut v = Verdict::default();
    let mut online = vec![false; instances.len()];
    let mut connected = vec![false; instances.len()];
    let mut faults = 0usize;
    // (user, web) -> (excess time so far, time of the last step while over the limit)
    let mut over: HashMap<(usize, bool), (Duration, Duration)> = HashMap::new();
    let users: usize = instances.iter().map(|i| i.user + 1).max().unwrap_or(0);
    let class_state = |online: &[bool], connected: &[bool], user: usize, web: bool| {
        let members = instances
            .iter()
            .enumerate()
            .filter(|(i, m)| m.user == user && m.web == web && online[*i]);
        let (mut n, mut all_connected) = (0, true);
        for (i, _) in members {
            n += 1;
            all_connected &= connected[i];
        }
        (n, all_connected)
    };
    let mut step = |at: Duration, online: &[bool], connected: &[bool], faults: usize| {
        for user in 0..users {
            for web in [true, false] {
                let limit = if web {
                    rules.web_limit
                } else {
                    rules.native_limit
                };
                let (n, all_connected) = class_state(online, connected, user, web);
                let key = (user, web);
                if n > limit {
                    let entry = over.entry(key).or_insert((Duration::ZERO, at));
                    let counts = all_connected && faults == 0;
                    // The time since the last step counts if the state during it did.
                    if counts {
                        entry.0 += at.saturating_sub(entry.1);
                    }
                    entry.1 = at;
                } else if let Some((excess, _)) = over.remove(&key) {
                    v.checked += 1;
                    if excess > rules.kick_bound {
                        v.broken.push(format!(
                            "user {user}: {} {} instances online for {:.2} s beyond the limit of {limit} (bound {:.2} s), ending at {:.2} s",
                            if web { "Web" } else { "native" },
                            limit + 1,
                            excess.as_secs_f64(),
                            rules.kick_bound.as_secs_f64(),
                            at.as_secs_f64()
                        ));
                    }
                }
            }
        }
    };
    for e in history {
        // The state before this entry held until now.
        step(e.at, &online, &connected, faults);
        match &e.op {
            Op::LoginOk { inst } => {
                online[*inst] = true;
                connected[*inst] = true;
            }
            Op::LoggedOut { inst } | Op::Kicked { inst, .. } | Op::NotReady { inst } => {
                online[*inst] = false
            }
            Op::Net { inst, connected: c } => connected[*inst] = *c,
            Op::FaultStart { .. } => faults += 1,
            Op::FaultEnd { .. } => faults = faults.saturating_sub(1),
            _ => {}
        }
        step(e.at, &online, &connected, faults);
    }
    v
}

/// No login accepted with a UserSig issued at or before an acknowledged REST kick's second,
/// when the login started after the acknowledgement.
pub fn revocation(history: &[Entry], instances: &[Instance]) -> Verdict {
    let mut v = Verdict::default();
    let mut acks: HashMap<usize, Vec<(Duration, u64)>> = HashMap::new();
    let mut sent: HashMap<usize, (Duration, u64)> = HashMap::new();
    for e in history {
        match &e.op {
            Op::KickAck { user, wall } => acks.entry(*user).or_default().push((e.at, *wall)),
            Op::LoginSent { inst, sig_time } => {
                sent.insert(*inst, (e.at, *sig_time));
            }
            Op::LoginOk { inst } => {
                let Some(&(sent_at, sig_time)) = sent.get(inst) else {
                    continue;
                };
                let user = instances[*inst].user;
                for &(ack_at, wall) in acks.get(&user).into_iter().flatten() {
                    if ack_at < sent_at {
                        v.checked += 1;
                        if sig_time <= wall {
                            v.broken.push(format!(
                                "user {user}: instance {inst} logged in at {:.2} s with a UserSig of {sig_time}, revoked by the kick of {wall} acknowledged at {:.2} s",
                                e.at.as_secs_f64(),
                                ack_at.as_secs_f64()
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    v
}

/// No resume of a session after its end (logout or kick) was acknowledged.
pub fn dead_tickets(history: &[Entry]) -> Verdict {
    let mut v = Verdict::default();
    let mut ended: HashMap<usize, Duration> = HashMap::new();
    for e in history {
        match &e.op {
            Op::TicketEnded { ticket } => {
                ended.entry(*ticket).or_insert(e.at);
            }
            Op::ResumeAnswered { ticket, accepted } => {
                if let Some(end) = ended.get(ticket) {
                    v.checked += 1;
                    if *accepted {
                        v.broken.push(format!(
                            "ticket {ticket}: resumed at {:.2} s, its session's end acknowledged at {:.2} s",
                            e.at.as_secs_f64(),
                            end.as_secs_f64()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    v
}

/// Every kick has a cause: another instance's login (instance limit, policy) or a REST kick
/// of the user, sent between `cause_slack` before the kicked instance's login and the kick.
pub fn kicks_explained(history: &[Entry], instances: &[Instance], rules: &Rules) -> Verdict {
    let mut v = Verdict::default();
    let mut last_ok: HashMap<usize, Duration> = HashMap::new();
    let mut logins: Vec<(Duration, usize)> = Vec::new();
    let mut rest: Vec<(Duration, usize)> = Vec::new();
    for e in history {
        match &e.op {
            Op::LoginOk { inst } => {
                last_ok.insert(*inst, e.at);
            }
            Op::LoginSent { inst, .. } => logins.push((e.at, *inst)),
            Op::KickSent { user, .. } => rest.push((e.at, *user)),
            Op::Kicked { inst, reason } => {
                v.checked += 1;
                let user = instances[*inst].user;
                let from = last_ok
                    .get(inst)
                    .map_or(Duration::ZERO, |t| t.saturating_sub(rules.cause_slack));
                let explained = match reason {
                    KickReason::MultipleAccount | KickReason::MultipleDevice => {
                        logins.iter().any(|&(t, other)| {
                            other != *inst && instances[other].user == user && t >= from
                        })
                    }
                    KickReason::RestApi => rest.iter().any(|&(t, u)| u == user && t >= from),
                    _ => false,
                };
                if !explained {
                    v.broken.push(format!(
                        "user {user}: instance {inst} kicked ({reason:?}) at {:.2} s with no cause since {:.2} s",
                        e.at.as_secs_f64(),
                        from.as_secs_f64()
                    ));
                }
            }
            _ => {}
        }
    }
    v
}

/// How long after `after` (the last fault's end) the instances that were logged in but not
/// connected at that moment took to connect again: the longest wait, and those never back
/// while still logged in (an instance that ended its session meanwhile is not waited for).
pub fn back_after(history: &[Entry], instances: usize, after: Duration) -> (Duration, Vec<usize>) {
    let mut online = vec![false; instances];
    let mut connected = vec![false; instances];
    let mut waiting: Vec<Option<bool>> = vec![None; instances];
    let mut longest = Duration::ZERO;
    let mut marked = false;
    for e in history {
        if !marked && e.at >= after {
            marked = true;
            for i in 0..instances {
                if online[i] && !connected[i] {
                    waiting[i] = Some(false);
                }
            }
        }
        match &e.op {
            Op::LoginOk { inst } => {
                online[*inst] = true;
                connected[*inst] = true;
            }
            Op::LoggedOut { inst } | Op::Kicked { inst, .. } | Op::NotReady { inst } => {
                online[*inst] = false;
                if waiting[*inst] == Some(false) {
                    waiting[*inst] = None;
                }
            }
            Op::Net { inst, connected: c } => {
                connected[*inst] = *c;
                if *c && marked && waiting[*inst] == Some(false) {
                    waiting[*inst] = Some(true);
                    longest = longest.max(e.at.saturating_sub(after));
                }
            }
            _ => {}
        }
    }
    let never = (0..instances)
        .filter(|i| waiting[*i] == Some(false))
        .collect();
    (longest, never)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, op: Op) -> Entry {
        Entry {
            at: Duration::from_millis(ms),
            op,
        }
    }

    const RULES: Rules = Rules {
        web_limit: 1,
        native_limit: 1,
        kick_bound: Duration::from_secs(1),
        cause_slack: Duration::from_secs(1),
    };

    fn two_web() -> Vec<Instance> {
        vec![
            Instance { user: 0, web: true },
            Instance { user: 0, web: true },
        ]
    }

    #[test]
    fn an_instance_over_the_limit_past_the_bound_is_flagged() {
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(100, Op::LoginOk { inst: 1 }),
            at(
                2_100,
                Op::Kicked {
                    inst: 0,
                    reason: KickReason::MultipleAccount,
                },
            ),
        ];
        let v = limits(&h, &two_web(), &RULES);
        assert_eq!(v.broken.len(), 1, "{v:?}");
        // Within the bound: fine.
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(100, Op::LoginOk { inst: 1 }),
            at(
                900,
                Op::Kicked {
                    inst: 0,
                    reason: KickReason::MultipleAccount,
                },
            ),
        ];
        assert!(limits(&h, &two_web(), &RULES).broken.is_empty());
    }

    #[test]
    fn time_disconnected_or_under_a_fault_does_not_count() {
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(
                100,
                Op::Net {
                    inst: 0,
                    connected: false,
                },
            ),
            at(200, Op::LoginOk { inst: 1 }),
            at(
                5_000,
                Op::Net {
                    inst: 0,
                    connected: true,
                },
            ),
            at(
                5_500,
                Op::Kicked {
                    inst: 0,
                    reason: KickReason::MultipleAccount,
                },
            ),
        ];
        let v = limits(&h, &two_web(), &RULES);
        assert!(v.broken.is_empty(), "{v:?}");
        assert_eq!(v.checked, 1);
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(100, Op::FaultStart { name: "x".into() }),
            at(200, Op::LoginOk { inst: 1 }),
            at(5_000, Op::FaultEnd { name: "x".into() }),
            at(
                6_500,
                Op::Kicked {
                    inst: 0,
                    reason: KickReason::MultipleAccount,
                },
            ),
        ];
        assert_eq!(limits(&h, &two_web(), &RULES).broken.len(), 1);
    }

    #[test]
    fn a_login_with_a_revoked_usersig_is_flagged() {
        let inst = two_web();
        let h = vec![
            at(
                0,
                Op::KickSent {
                    user: 0,
                    wall: 1_000,
                },
            ),
            at(
                10,
                Op::KickAck {
                    user: 0,
                    wall: 1_000,
                },
            ),
            at(
                20,
                Op::LoginSent {
                    inst: 0,
                    sig_time: 1_000,
                },
            ),
            at(30, Op::LoginOk { inst: 0 }),
        ];
        assert_eq!(revocation(&h, &inst).broken.len(), 1);
        let h = vec![
            at(
                0,
                Op::KickSent {
                    user: 0,
                    wall: 1_000,
                },
            ),
            at(
                10,
                Op::KickAck {
                    user: 0,
                    wall: 1_000,
                },
            ),
            at(
                20,
                Op::LoginSent {
                    inst: 0,
                    sig_time: 1_001,
                },
            ),
            at(30, Op::LoginOk { inst: 0 }),
        ];
        let v = revocation(&h, &inst);
        assert_eq!((v.checked, v.broken.len()), (1, 0));
    }

    #[test]
    fn a_resume_after_an_acknowledged_end_is_flagged() {
        let h = vec![
            at(
                0,
                Op::ResumeAnswered {
                    ticket: 7,
                    accepted: true,
                },
            ),
            at(10, Op::TicketEnded { ticket: 7 }),
            at(
                20,
                Op::ResumeAnswered {
                    ticket: 7,
                    accepted: false,
                },
            ),
        ];
        let v = dead_tickets(&h);
        assert_eq!((v.checked, v.broken.len()), (1, 0));
        let h = vec![
            at(10, Op::TicketEnded { ticket: 7 }),
            at(
                20,
                Op::ResumeAnswered {
                    ticket: 7,
                    accepted: true,
                },
            ),
        ];
        assert_eq!(dead_tickets(&h).broken.len(), 1);
    }

    #[test]
    fn the_wait_after_the_last_fault_counts_those_away_then() {
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(0, Op::LoginOk { inst: 1 }),
            at(
                100,
                Op::Net {
                    inst: 0,
                    connected: false,
                },
            ),
            at(1_000, Op::FaultEnd { name: "x".into() }),
            at(
                1_500,
                Op::Net {
                    inst: 1,
                    connected: false,
                },
            ),
            at(
                3_000,
                Op::Net {
                    inst: 0,
                    connected: true,
                },
            ),
        ];
        let (longest, never) = back_after(&h, 2, Duration::from_millis(1_000));
        assert_eq!((longest, never), (Duration::from_millis(2_000), vec![]));
        let (_, never) = back_after(&h[..4], 2, Duration::from_millis(1_000));
        assert_eq!(never, vec![0]);
    }

    #[test]
    fn a_kick_without_a_cause_is_flagged() {
        let inst = two_web();
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(
                5_000,
                Op::Kicked {
                    inst: 0,
                    reason: KickReason::MultipleAccount,
                },
            ),
        ];
        assert_eq!(kicks_explained(&h, &inst, &RULES).broken.len(), 1);
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(
                4_000,
                Op::LoginSent {
                    inst: 1,
                    sig_time: 1,
                },
            ),
            at(
                5_000,
                Op::Kicked {
                    inst: 0,
                    reason: KickReason::MultipleAccount,
                },
            ),
        ];
        assert!(kicks_explained(&h, &inst, &RULES).broken.is_empty());
        // A REST kick explains only a REST kick.
        let h = vec![
            at(0, Op::LoginOk { inst: 0 }),
            at(4_000, Op::KickSent { user: 0, wall: 1 }),
            at(
                5_000,
                Op::Kicked {
                    inst: 0,
                    reason: KickReason::MultipleDevice,
                },
            ),
        ];
        assert_eq!(kicks_explained(&h, &inst, &RULES).broken.len(), 1);
    }
}
