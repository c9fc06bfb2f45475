//! The restart run at scale: every node in turn restarted (SIGTERM then start again, and
//! kill -9 then start again, on the same port) while its clients reconnect and resume with
//! their tickets. Counts lost sessions (not back, or back only by logging in again because
//! the resume was refused) and spurious kicks (nobody else took those sessions).

use std::time::{Duration, Instant};

use crate::restart::Mode;
use crate::stats::print_summary;
use crate::sys::listen_overflows;

use super::nodes::Nodes;
use super::workers::Workers;

/// Restarts every node once per mode; whether nothing was lost or kicked. `per_node[i]`:
/// the sessions on node i. `renew_every`: the lease renewal period (a late kick from a
/// renewal shows within it).
pub async fn run(
    nodes: &mut Nodes,
    workers: &mut Workers,
    per_node: &[usize],
    modes: &[Mode],
    timeout: Duration,
    renew_every: Duration,
) -> bool {
    let total: usize = per_node.iter().sum();
    let before = workers.status().await;
    let mut lost_not_back = 0;
    let mut prev = before.clone();
    for &mode in modes {
        let (name, signal) = match mode {
            Mode::Term => ("SIGTERM", libc::SIGTERM),
            Mode::Kill => ("kill -9", libc::SIGKILL),
        };
        for i in 0..nodes.nodes.len() {
            workers.mark().await;
            let overflows0 = listen_overflows();
            let t0 = Instant::now();
            let exited = nodes.nodes[i].stop(signal).await;
            let up = nodes.nodes[i].start().await;
            let deadline = t0 + timeout;
            let mut back;
            loop {
                back = workers.back(per_node.len()).await[i];
                if back >= per_node[i] || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let all_back = t0.elapsed();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = workers.status().await;
            let not_back = per_node[i].saturating_sub(back);
            lost_not_back += not_back;
            println!(
                "    node {i} {name}: gone {:.0} ms, listening {:.0} ms, {back}/{} back in {:.2} s; \
                 resumes refused (logged in again) {}, put off (70169, retried) {}, spurious kicks {}, \
                 SDK_NOT_READY {}, errors {}, accept-queue drops {}",
                exited.saturating_duration_since(t0).as_secs_f64() * 1e3,
                up.saturating_duration_since(t0).as_secs_f64() * 1e3,
                per_node[i],
                all_back.as_secs_f64(),
                now.relogins - prev.relogins,
                now.put_off - prev.put_off,
                now.kicks - prev.kicks,
                now.not_ready - prev.not_ready,
                now.errors - prev.errors,
                overflows0
                    .zip(listen_overflows())
                    .map_or("?".into(), |(a, b)| b.saturating_sub(a).to_string()),
            );
            let mut times: Vec<Duration> = now
                .times
                .iter()
                .map(|ms| Duration::from_secs_f64(ms / 1e3))
                .collect();
            print_summary("      signal -> back connected, per session", &mut times);
            prev = now;
        }
    }
    // A kick a lease renewal would find shows within one renewal period.
    let wait = renew_every + Duration::from_secs(2);
    println!(
        "    waiting {:.0} s (a lease renewal period + 2 s) for late kicks…",
        wait.as_secs_f64()
    );
    tokio::time::sleep(wait).await;
    let end = workers.status().await;
    let refused = end.relogins - before.relogins;
    let kicks = end.kicks - before.kicks;
    let not_ready = end.not_ready - before.not_ready;
    let errors = end.errors - before.errors;
    let lost = lost_not_back + refused;
    println!(
        "  restart run: {} restarts; lost sessions {lost} (not back {lost_not_back}, resume refused {refused}), \
         spurious kicks {kicks}, SDK_NOT_READY {not_ready}, errors {errors}; connected now {}/{total}",
        modes.len() * nodes.nodes.len(),
        end.connected
    );
    lost == 0 && kicks == 0 && not_ready == 0 && end.connected == total
}
