//! Cross-node kick delivery against same-node kick delivery, in one run on the same nodes:
//! pairs of Web instances (limit 1) kick each other, one kick at a time, alternating a
//! same-node pair and a cross-node pair so both see the same machine load.

use std::time::Duration;

use crate::kick::KickPair;
use crate::stats::{print_summary, summary};

/// Runs `kicks` (+ `warmup`) kicks of each kind over `urls` (≥ 2 nodes); whether none went
/// wrong.
pub async fn run(urls: &[String], kicks: usize, warmup: usize) -> bool {
    let n = urls.len();
    assert!(n >= 2, "cross-node kicks need 2 nodes or more");
    println!(
        "  cluster kick: {n} nodes, {kicks} same-node and {kicks} cross-node kicks (+ {warmup} warm-up each), one at a time, alternating"
    );
    let mut same = Vec::with_capacity(n);
    let mut cross = Vec::with_capacity(n);
    for i in 0..n {
        same.push(KickPair::new(&urls[i], &urls[i], format!("same-{i}")).await);
        cross.push(KickPair::new(&urls[i], &urls[(i + 1) % n], format!("cross-{i}")).await);
    }
    let (mut same_ms, mut cross_ms) = (Vec::new(), Vec::new());
    let (mut same_login, mut cross_login) = (Vec::new(), Vec::new());
    let mut wrong = 0;
    for round in 0..kicks + warmup {
        for (pairs, delivery, login) in [
            (&mut same, &mut same_ms, &mut same_login),
            (&mut cross, &mut cross_ms, &mut cross_login),
        ] {
            match pairs[round % n].kick().await {
                Ok(s) if round >= warmup => {
                    delivery.push(s.delivery);
                    login.push(s.login);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("  {e}");
                    wrong += 1;
                }
            }
        }
    }
    print_summary("    same-node kick delivery ", &mut same_ms);
    print_summary("    cross-node kick delivery", &mut cross_ms);
    print_summary("    same-node login round trip ", &mut same_login);
    print_summary("    cross-node login round trip", &mut cross_login);
    let p99 = |v: &mut Vec<Duration>| if v.is_empty() { f64::NAN } else { summary(v).2 };
    let cross_p99 = p99(&mut cross_ms);
    println!(
        "    cross-node kick p99 {cross_p99:.3} ms ({}; target < 5 ms) vs same-node p99 {:.3} ms; missing kicks / failed logins: {wrong}",
        if cross_p99 < 5.0 { "OK" } else { "OVER TARGET" },
        p99(&mut same_ms)
    );
    wrong == 0
}
