//! Turns the records of one benchmark invocation into tables: every figure as
//! median [min–max] over the repetitions, and its ratio to the best anchor of the same run.
//! Nothing here measures anything.

use crate::scenario::{Better, MetricDef, Record};
use crate::servers::Kind;
use std::fmt::Write;

/// median, min, max of the values of `key` for `server` in `recs`; None if no run had it.
pub fn stats(recs: &[&Record], server: Kind, key: &str) -> Option<(f64, f64, f64, usize)> {
    stats_of(recs, server.name(), key)
}

/// [`stats`] for the records whose `server` field is `column` (a server or a configuration).
pub fn stats_of(recs: &[&Record], column: &str, key: &str) -> Option<(f64, f64, f64, usize)> {
    let mut xs: Vec<f64> = recs
        .iter()
        .filter(|r| r.server == column)
        .filter_map(|r| r.values.get(key).copied())
        .collect();
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let med = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    Some((med, xs[0], xs[n - 1], n))
}

pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The best anchor's median for a metric (lowest or highest, by `better`).
pub fn best_anchor(recs: &[&Record], servers: &[Kind], d: &MetricDef) -> Option<(Kind, f64)> {
    let mut best: Option<(Kind, f64)> = None;
    for &k in servers.iter().filter(|k| k.is_anchor()) {
        let Some((med, ..)) = stats(recs, k, d.key) else {
            continue;
        };
        let better = match (best, d.better) {
            (None, _) => true,
            (Some((_, b)), Better::Lower) => med < b,
            (Some((_, b)), Better::Higher) => med > b,
            (Some(_), Better::Info) => false,
        };
        if better {
            best = Some((k, med));
        }
    }
    best
}

/// One markdown table: rows = metrics, columns = servers, plus the best anchor.
pub fn table(title: &str, recs: &[&Record], servers: &[Kind], metrics: &[MetricDef]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n### {title}\n");
    let _ = write!(s, "| figure |");
    for k in servers {
        let _ = write!(s, " {} |", k.label());
    }
    let _ = writeln!(s, " best anchor |");
    let _ = write!(s, "|---|");
    for _ in servers {
        let _ = write!(s, "---|");
    }
    let _ = writeln!(s, "---|");
    for d in metrics {
        if servers.iter().all(|k| stats(recs, *k, d.key).is_none()) {
            continue;
        }
        let best = if d.count || d.better == Better::Info {
            None
        } else {
            best_anchor(recs, servers, d)
        };
        let _ = write!(s, "| {} |", d.label);
        for &k in servers {
            let c = cell(recs, k.name(), d, best.map(|(_, b)| b));
            let _ = write!(s, " {c} |");
        }
        let b = match best {
            Some((k, v)) => format!("{} {}", k.label(), fmt_num(v)),
            None => "–".into(),
        };
        let _ = writeln!(s, " {b} |");
    }
    s.push_str(&notes(recs));
    s
}

/// One markdown table of configurations of one server (rows = metrics, columns = `columns`,
/// the records' `server` field), each median also as a ratio to the `baseline` column's if
/// one is given.
pub fn table_vs(
    title: &str,
    recs: &[&Record],
    columns: &[&str],
    baseline: Option<&str>,
    metrics: &[MetricDef],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n### {title}\n");
    let _ = write!(s, "| figure |");
    for c in columns {
        let _ = write!(s, " {c} |");
    }
    let _ = writeln!(s);
    let _ = write!(s, "|---|");
    for _ in columns {
        let _ = write!(s, "---|");
    }
    let _ = writeln!(s);
    for d in metrics {
        if columns.iter().all(|c| stats_of(recs, c, d.key).is_none()) {
            continue;
        }
        let base = match baseline {
            Some(b) if !d.count && d.better != Better::Info => {
                stats_of(recs, b, d.key).map(|(med, ..)| med)
            }
            _ => None,
        };
        let _ = write!(s, "| {} |", d.label);
        for c in columns {
            // The baseline's own ratio (1.00×) says nothing.
            let b = if Some(*c) == baseline { None } else { base };
            let _ = write!(s, " {} |", cell(recs, c, d, b));
        }
        let _ = writeln!(s);
    }
    s.push_str(&notes(recs));
    s
}

/// One cell: `k/n` for counted figures, else median [min–max] and the ratio to `base`.
fn cell(recs: &[&Record], column: &str, d: &MetricDef, base: Option<f64>) -> String {
    if d.count {
        let runs: Vec<f64> = recs
            .iter()
            .filter(|r| r.server == column)
            .filter_map(|r| r.values.get(d.key).copied())
            .collect();
        if runs.is_empty() {
            return "n/a".to_string();
        }
        return format!(
            "{}/{}",
            runs.iter().filter(|x| **x > 0.5).count(),
            runs.len()
        );
    }
    match stats_of(recs, column, d.key) {
        None => "n/a".to_string(),
        Some((med, lo, hi, n)) => {
            let mut c = if n > 1 {
                format!("{} [{}–{}]", fmt_num(med), fmt_num(lo), fmt_num(hi))
            } else {
                fmt_num(med)
            };
            if let Some(b) = base
                && b != 0.0
            {
                let _ = write!(c, " ({:.2}×)", med / b);
            }
            c
        }
    }
}

/// The runs' notes, one line each.
fn notes(recs: &[&Record]) -> String {
    let mut s = String::new();
    for r in recs {
        for n in &r.notes {
            let _ = writeln!(s, "- {} run {}: {n}", r.server, r.rep + 1);
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scenario::Better;
    use std::collections::BTreeMap;

    fn rec(server: &'static str, rep: usize, v: f64) -> Record {
        Record {
            scenario: "t",
            server: server.to_string(),
            rep,
            values: BTreeMap::from([("x", v)]),
            notes: vec![],
        }
    }

    #[test]
    fn median_range_and_best_anchor_exclude_weaver() {
        let recs = [
            rec("weaver", 0, 1.0),
            rec("weaver", 1, 3.0),
            rec("weaver", 2, 2.0),
            rec("yws", 0, 4.0),
            rec("ysweet", 0, 8.0),
            rec("ysweet", 1, 6.0),
        ];
        let refs: Vec<&Record> = recs.iter().collect();
        assert_eq!(stats(&refs, Kind::Weaver, "x"), Some((2.0, 1.0, 3.0, 3)));
        assert_eq!(stats(&refs, Kind::Ysweet, "x"), Some((7.0, 6.0, 8.0, 2)));
        assert_eq!(stats(&refs, Kind::Hocuspocus, "x"), None);
        let kinds = [Kind::Weaver, Kind::Yws, Kind::Ysweet];
        let lower = MetricDef {
            key: "x",
            label: "x",
            better: Better::Lower,
            count: false,
        };
        assert_eq!(best_anchor(&refs, &kinds, &lower), Some((Kind::Yws, 4.0)));
        let higher = MetricDef {
            better: Better::Higher,
            ..lower
        };
        assert_eq!(
            best_anchor(&refs, &kinds, &higher),
            Some((Kind::Ysweet, 7.0))
        );
        let t = table("t", &refs, &kinds, &[lower]);
        assert!(t.contains("2.00 [1.00–3.00] (0.50×)"), "{t}");
    }

    #[test]
    fn configurations_against_a_baseline_column() {
        let recs = [
            rec("redb-1", 0, 2.0),
            rec("redb-1", 1, 2.0),
            rec("js-3", 0, 3.0),
            rec("js-3", 1, 5.0),
        ];
        let refs: Vec<&Record> = recs.iter().collect();
        let d = MetricDef::new("x", "x", Better::Lower);
        let t = table_vs(
            "t",
            &refs,
            &["redb-1", "js-1", "js-3"],
            Some("redb-1"),
            &[d],
        );
        assert!(
            t.contains("| x | 2.00 [2.00–2.00] | n/a | 4.00 [3.00–5.00] (2.00×) |"),
            "{t}"
        );
    }
}
