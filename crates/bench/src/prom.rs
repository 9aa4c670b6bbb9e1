//! Just enough of the Prometheus text format to read Weaver's `/metrics` before and after a
//! measured window: summed counters and histogram buckets (quantiles of the delta between two
//! scrapes). Not a general parser: labels are matched as raw text.

/// Sum of every sample of `name` (all label sets), or None if absent.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = head.split('{').next().unwrap_or(head);
        if metric == name
            && let Ok(v) = value.trim().parse::<f64>()
        {
            total += v;
            found = true;
        }
    }
    found.then_some(total)
}

/// Cumulative `(le, count)` buckets of histogram `name` (summed over label sets), sorted by le.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let want = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&want) else {
            continue;
        };
        let Some(le_start) = rest.find("le=\"") else {
            continue;
        };
        let le_txt = &rest[le_start + 4..];
        let Some(le_end) = le_txt.find('"') else {
            continue;
        };
        let le = if &le_txt[..le_end] == "+Inf" {
            f64::INFINITY
        } else {
            match le_txt[..le_end].parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        let Some(v) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        else {
            continue;
        };
        match out.iter_mut().find(|(l, _)| *l == le) {
            Some(slot) => slot.1 += v,
            None => out.push((le, v)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Quantile `q` of the observations that fell between two scrapes, interpolated linearly
/// inside the bucket (as Prometheus' histogram_quantile does).
pub fn delta_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|x| x.1)
                .unwrap_or(0.0);
            (*le, c - b)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_c = 0.0;
    for (le, c) in delta {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            let frac = if c > prev_c {
                (rank - prev_c) / (c - prev_c)
            } else {
                1.0
            };
            return Some(prev_le + (le - prev_le) * frac);
        }
        prev_le = le;
        prev_c = c;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE h histogram\nh_bucket{le=\"0.001\"} 1\nh_bucket{le=\"0.01\"} 2\nh_bucket{le=\"+Inf\"} 2\nc_total{a=\"x\"} 3\nc_total{a=\"y\"} 4\n";
    const AFTER: &str = "h_bucket{le=\"0.001\"} 51\nh_bucket{le=\"0.01\"} 101\nh_bucket{le=\"+Inf\"} 102\nc_total{a=\"x\"} 10\n";

    #[test]
    fn counters_sum_over_labels_and_quantiles_use_the_delta() {
        assert_eq!(sum(BEFORE, "c_total"), Some(7.0));
        assert_eq!(sum(BEFORE, "missing"), None);
        let (b, a) = (buckets(BEFORE, "h"), buckets(AFTER, "h"));
        assert_eq!(b.len(), 3);
        // 100 new observations: 50 below 1 ms, 50 in (1 ms, 10 ms], 0 above.
        let p50 = delta_quantile(&b, &a, 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p99 = delta_quantile(&b, &a, 0.99).unwrap();
        assert!(p99 > 0.009 && p99 <= 0.01 + 1e-9, "{p99}");
        assert_eq!(delta_quantile(&a, &a, 0.5), None);
    }
}
