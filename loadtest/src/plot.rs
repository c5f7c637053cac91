//! `latency.svg`: latency by percentile, the usual HdrHistogram picture. The x axis is
//! log₁₀(1 / (1 − p)), so 0 %, 90 %, 99 %, 99.9 % and 99.99 % are evenly spaced and the tail
//! gets the room it deserves; y is milliseconds. One line per target × metric: the colour is
//! the target, the dash the metric. Hand-written SVG: a plotting crate would be most of the
//! harness's build for one picture.

use std::fmt::Write as _;

use crate::report::Hist;

/// One line: its label, target (colour), metric (dash), histogram.
#[derive(Debug)]
pub struct Series<'a> {
    pub target: &'a str,
    pub metric: &'a str,
    pub hist: &'a Hist,
}

const W: f64 = 960.0;
const H: f64 = 560.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Nines shown: up to 99.99 %.
const MAX_X: f64 = 4.0;
const STEPS: usize = 80;

fn colour(target: &str) -> &'static str {
    match target {
        "parla" => "#3b5bdb",
        "raw" => "#2b8a3e",
        "socketio" => "#e8590c",
        _ => "#868e96",
    }
}

fn dash(metric: &str) -> &'static str {
    match metric {
        "echo" => "",
        "first_token" => "8 4",
        "stream_end" => "2 3",
        "connect" => "12 4 2 4",
        _ => "3 6",
    }
}

/// A "nice" upper bound for the y axis and its tick step.
fn nice_scale(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw_step = max / 5.0;
    let magnitude = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw_step)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn quantile(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

/// The SVG document for `series` (empty histograms are skipped).
pub fn latency_svg(title: &str, series: &[Series<'_>]) -> String {
    let series: Vec<&Series<'_>> = series.iter().filter(|s| s.hist.count() > 0).collect();
    let max_ms = series.iter().map(|s| s.hist.ms_at(quantile(MAX_X))).fold(0.0, f64::max);
    let (y_max, y_step) = nice_scale(max_ms);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / MAX_X * plot_w;
    let py = |ms: f64| TOP + plot_h - (ms / y_max).min(1.0) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    // Grid and axes.
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%"].iter().enumerate() {
        let x = px(i as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#dee2e6"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let mut tick = 0.0;
    while tick <= y_max + y_step / 2.0 {
        let y = py(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dee2e6"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            trim_float(tick)
        );
        tick += y_step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"#,
        TOP + plot_h / 2.0
    );
    // Lines and legend.
    for (n, s) in series.iter().enumerate() {
        let points: Vec<String> = (0..=STEPS)
            .map(|i| {
                let x = MAX_X * i as f64 / STEPS as f64;
                format!("{:.1},{:.1}", px(x), py(s.hist.ms_at(quantile(x))))
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}" points="{}"/>"#,
            colour(s.target),
            dash(s.metric),
            points.join(" ")
        );
        let ly = TOP + 10.0 + n as f64 * 20.0;
        let lx = W - RIGHT + 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/><text x="{}" y="{}">{} {}</text>"#,
            lx + 36.0,
            colour(s.target),
            dash(s.metric),
            lx + 42.0,
            ly + 4.0,
            escape(s.target),
            escape(s.metric)
        );
    }
    if series.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no latencies recorded</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_series() {
        let mut a = Hist::default();
        let mut b = Hist::default();
        for us in 1..=1000 {
            a.record_us(us * 10);
            b.record_us(us * 30);
        }
        let svg = latency_svg(
            "chat <test>",
            &[
                Series { target: "parla", metric: "echo", hist: &a },
                Series { target: "raw", metric: "first_token", hist: &b },
                Series { target: "raw", metric: "connect", hist: &Hist::default() },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("chat &lt;test&gt;"));
        assert!(svg.contains("99.99%"));
    }

    #[test]
    fn scales_are_nice() {
        assert_eq!(nice_scale(7.3), (8.0, 2.0));
        assert_eq!(nice_scale(0.0), (1.0, 0.2));
        assert_eq!(nice_scale(230.0), (250.0, 50.0));
    }
}
