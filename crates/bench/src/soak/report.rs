//! The soak's figures: every series' least-squares slope per hour after warm-up, the samples
//! as CSV, and a chart as a small hand-written SVG (one panel per series, so a flat line and a
//! creeping one look different whatever their units).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::sample::Sample;

/// Least-squares slope of `(x, y)`, per unit of x; 0 for fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// One series after warm-up: `(hours since start, value)`.
fn series(samples: &[Sample], name: &str, warmup: u64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter(|s| s.at >= warmup)
        .map(|s| (s.at as f64 / 3600.0, s.get(name)))
        .collect()
}

pub fn print_slopes(samples: &[Sample], warmup: u64) {
    let Some(first) = samples.first() else {
        return;
    };
    let used = samples.iter().filter(|s| s.at >= warmup).count();
    println!("  slopes per hour after {warmup} s of warm-up ({used} samples; least squares):");
    for (name, _) in &first.values {
        let points = series(samples, name, warmup);
        let per_hour = slope(&points);
        let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64;
        let (min, max) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
        let relative = if mean.abs() > f64::EPSILON {
            format!("{:+.2}% of its mean", 100.0 * per_hour / mean)
        } else {
            "mean 0".to_owned()
        };
        println!(
            "    {name:<26} {per_hour:>+12.3}/h ({relative}); range {} .. {}",
            fmt(min),
            fmt(max)
        );
    }
}

fn fmt(v: f64) -> String {
    if v == f64::MAX || v == f64::MIN {
        "-".into()
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes `<name>.csv` and `<name>.svg` into `dir`.
pub fn write(
    dir: &Path,
    name: &str,
    title: &str,
    samples: &[Sample],
    warmup: u64,
) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let csv = dir.join(format!("{name}.csv"));
    let svg = dir.join(format!("{name}.svg"));
    std::fs::write(&csv, to_csv(samples))?;
    std::fs::write(&svg, to_svg(title, samples, warmup))?;
    Ok((csv, svg))
}

fn to_csv(samples: &[Sample]) -> String {
    let mut out = String::from("seconds");
    if let Some(first) = samples.first() {
        for (name, _) in &first.values {
            out.push(',');
            out.push_str(name);
        }
    }
    out.push('\n');
    for s in samples {
        out.push_str(&s.at.to_string());
        for (_, v) in &s.values {
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
    out
}

const PANEL_W: f64 = 240.0;
const PANEL_H: f64 = 90.0;
const COLUMNS: usize = 4;

/// One panel per series: its line over the run, the warm-up shaded, min and max labelled,
/// and the slope per hour after warm-up in the title.
pub fn to_svg(title: &str, samples: &[Sample], warmup: u64) -> String {
    let names: Vec<&str> = samples
        .first()
        .map(|s| s.values.iter().map(|(n, _)| n.as_str()).collect())
        .unwrap_or_default();
    let rows = names.len().div_ceil(COLUMNS);
    let (w, h) = (
        COLUMNS as f64 * (PANEL_W + 20.0) + 20.0,
        rows as f64 * (PANEL_H + 50.0) + 50.0,
    );
    let end = samples.last().map_or(1, |s| s.at.max(1)) as f64;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="24" font-size="14">{} — {} min, a panel per series (grey: warm-up)</text>
"##,
        escape(title),
        (end / 60.0).round()
    );
    for (i, name) in names.iter().enumerate() {
        let x0 = 20.0 + (i % COLUMNS) as f64 * (PANEL_W + 20.0);
        let y0 = 50.0 + (i / COLUMNS) as f64 * (PANEL_H + 50.0);
        let values: Vec<(f64, f64)> = samples.iter().map(|s| (s.at as f64, s.get(name))).collect();
        // From 0 (or the minimum, if negative) to the maximum: a working set that wobbles
        // looks flat and a leak climbs, rather than noise filling the panel.
        let lo = values.iter().map(|p| p.1).fold(0.0, f64::min);
        let hi = values.iter().map(|p| p.1).fold(f64::MIN, f64::max).max(lo);
        let span = if hi > lo { hi - lo } else { 1.0 };
        let y_of = |v: f64| y0 + 20.0 + PANEL_H * (1.0 - (v - lo) / span);
        let points: Vec<String> = values
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x0 + PANEL_W * t / end, y_of(*v)))
            .collect();
        let per_hour = slope(&series(samples, name, warmup));
        let _ = write!(
            svg,
            r##"<text x="{x0}" y="{ty}">{} ({:+.3}/h)</text>
<rect x="{x0}" y="{py}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#ccc"/>
<rect x="{x0}" y="{py}" width="{ww:.1}" height="{PANEL_H}" fill="#eee"/>
<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{}"/>
<text x="{lx}" y="{hy}" text-anchor="end" fill="#666">{}</text>
<text x="{lx}" y="{ly}" text-anchor="end" fill="#666">{}</text>
"##,
            escape(name),
            per_hour,
            points.join(" "),
            fmt(hi),
            fmt(lo),
            ty = y0 + 14.0,
            py = y0 + 20.0,
            ww = PANEL_W * (warmup as f64).min(end) / end,
            lx = x0 + PANEL_W - 2.0,
            hy = y0 + 32.0,
            ly = y0 + 16.0 + PANEL_H,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: u64, v: f64) -> Sample {
        Sample {
            at,
            values: vec![("rss_mib".into(), v), ("flat".into(), 7.0)],
        }
    }

    #[test]
    fn slope_is_per_unit_of_x_and_zero_when_flat() {
        let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)];
        assert!((slope(&pts) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(0.0, 4.0), (1.0, 4.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 4.0)]), 0.0);
    }

    #[test]
    fn slopes_leave_out_the_warm_up_and_are_per_hour() {
        // A jump during warm-up, then +1 per minute: 60 per hour.
        let samples: Vec<Sample> = (0..=10)
            .map(|m| sample(m * 60, if m < 2 { 100.0 } else { m as f64 }))
            .collect();
        let per_hour = slope(&series(&samples, "rss_mib", 120));
        assert!((per_hour - 60.0).abs() < 1e-6, "{per_hour}");
        assert_eq!(slope(&series(&samples, "flat", 120)), 0.0);
    }

    #[test]
    fn the_chart_has_a_panel_per_series_and_the_csv_a_column() {
        let samples: Vec<Sample> = (0..5).map(|m| sample(m * 60, m as f64)).collect();
        let svg = to_svg("soak <embedded>", &samples, 60);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("soak &lt;embedded&gt;"));
        let csv = to_csv(&samples);
        assert_eq!(csv.lines().next(), Some("seconds,rss_mib,flat"));
        assert_eq!(csv.lines().count(), 6);
    }
}
