//! Curves of the scale scenarios: a tiny hand-written SVG line plot (one series per server,
//! log-scaled x for axes that grow by decades) and the growth exponent that says whether a
//! curve is at most linear in its axis. No plotting dependency: the figures are a few lines.

use std::fmt::Write;

/// One line of a plot: a server's figure at each point of the axis.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 560.0;
const H: f64 = 320.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 120.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;
const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A short label of an axis value.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// An SVG line plot of `series` (x log-scaled when `log_x`; y linear from 0). Points with a
/// non-finite or (for `log_x`) non-positive x are left out.
pub fn line_plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> String {
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!log_x || x > 0.0);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied().filter(keep))
        .collect();
    let fx = |x: f64| if log_x { x.log10() } else { x };
    let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), &(x, _)| {
        (a.min(fx(x)), b.max(fx(x)))
    });
    if pts.is_empty() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = pts.iter().fold(0.0_f64, |m, &(_, y)| m.max(y)) * 1.1;
    let y1 = if y1 > 0.0 { y1 } else { 1.0 };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (fx(x) - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - y / y1 * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="16" text-anchor="middle" font-size="13">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<path d="M{LEFT},{TOP} V{} H{}" fill="none" stroke="#333"/>"##,
        TOP + ph,
        LEFT + pw
    );
    for i in 0..=4 {
        let y = y1 * f64::from(i) / 4.0;
        let py = sy(y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 4.0,
            py + 4.0,
            tick(y)
        );
    }
    let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let px = sx(x);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{}" y2="{}" stroke="#333"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 4.0,
            TOP + ph + 16.0,
            tick(x)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 8.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        esc(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut p: Vec<(f64, f64)> = ser.points.iter().copied().filter(keep).collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
        }
        for &(x, y) in &p {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                sx(x),
                sy(y)
            );
        }
        let ly = TOP + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            LEFT + pw + 10.0,
            ly - 9.0,
            LEFT + pw + 24.0,
            ly,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// How a figure grows with its axis between the first and the last point: the exponent k of
/// y ∝ x^k (1: linear, 0: flat, 2: quadratic). `None` without two positive points.
pub fn growth_exponent(points: &[(f64, f64)]) -> Option<f64> {
    let mut p: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, y)| x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite())
        .collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (&(xa, ya), &(xb, yb)) = (p.first()?, p.last()?);
    if xb <= xa {
        return None;
    }
    Some((yb / ya).ln() / (xb / xa).ln())
}

/// Writes one curve's plot (`path`, titled `label`, x axis `x_label`) and returns the line that
/// names each series' growth exponent (`heading`, growth exponent: name k; …).
pub fn write_curve(
    path: &std::path::Path,
    label: &str,
    x_label: &str,
    heading: &str,
    series: &[Series],
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let svg = line_plot(label, x_label, label, series, true);
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    let mut text = format!("\n{heading}, growth exponent:");
    for s in series {
        if let Some(k) = growth_exponent(&s.points) {
            let _ = write!(text, " {} {k:.2};", s.name);
        }
    }
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn exponent_tells_flat_linear_and_quadratic_apart() {
        let flat = [(1e3, 5.0), (1e4, 5.0), (3e4, 5.0)];
        let linear = [(1e3, 2.0), (1e4, 20.0), (3e4, 60.0)];
        let quad = [(10.0, 1.0), (100.0, 100.0)];
        assert!(growth_exponent(&flat).unwrap().abs() < 1e-9);
        assert!((growth_exponent(&linear).unwrap() - 1.0).abs() < 1e-9);
        assert!((growth_exponent(&quad).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(growth_exponent(&[(1.0, 1.0)]), None);
        assert_eq!(growth_exponent(&[(1.0, 0.0), (2.0, 1.0)]), None);
    }

    #[test]
    fn plot_places_every_point_and_names_every_series() {
        let series = vec![
            Series {
                name: "weaver".into(),
                points: vec![(1e3, 1.0), (1e4, 2.0), (3e4, 4.0)],
            },
            Series {
                name: "a<b".into(),
                points: vec![(1e3, 3.0), (0.0, 9.0)],
            },
        ];
        let svg = line_plot("t", "connections", "KiB", &series, true);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(
            svg.matches("<circle").count(),
            4,
            "x = 0 is left out on a log axis"
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">weaver<") && svg.contains("a&lt;b"));
        assert!(svg.contains(">10k<") && svg.contains(">30k<"));
        // The highest point sits below the top of the plot (10 % headroom), the lowest axis
        // point at the left edge.
        assert!(svg.contains(&format!(r#"cx="{LEFT:.1}""#)));
        let empty = line_plot("t", "x", "y", &[], false);
        assert!(empty.contains("</svg>"));
    }
}
