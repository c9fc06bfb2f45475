//! Latency summaries: percentiles of a sample set, printed on one line.

use std::time::Duration;

/// `(p50, p90, p99, max, mean)` of `samples`, in milliseconds.
pub fn summary(samples: &mut [Duration]) -> (f64, f64, f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        ms(samples[i])
    };
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    (
        at(0.50),
        at(0.90),
        at(0.99),
        ms(samples[samples.len() - 1]),
        mean,
    )
}

pub fn print_summary(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        println!("{what}: no samples");
        return;
    }
    let (p50, p90, p99, max, mean) = summary(samples);
    println!(
        "{what}: n={} p50={p50:.3} ms p90={p90:.3} ms p99={p99:.3} ms max={max:.3} ms mean={mean:.3} ms",
        samples.len()
    );
}
