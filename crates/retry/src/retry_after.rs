//! The `Retry-After` response header (RFC 9110 §10.2.3): a number of seconds, or an HTTP-date.

use std::time::{Duration, SystemTime};

/// How long the server asked to wait, read at `now`. Both forms are understood: delta seconds
/// (`120`) and an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`); a date in the past means no
/// wait. Anything else (negative or fractional numbers, garbage) is `None`, so the caller
/// falls back to its own backoff.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `Wed, 21 Oct 2015 07:28:00 GMT`.
    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    #[test]
    fn both_forms() {
        let s = Duration::from_secs;
        for (value, want) in [
            ("3", Some(s(3))),
            (" 3 ", Some(s(3))),
            ("0", Some(s(0))),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(s(0))),
            ("Wed, 21 Oct 2015 07:30:00 GMT", Some(s(120))),
            // Obsolete forms HTTP/1.1 recipients must still accept.
            ("Wednesday, 21-Oct-15 07:29:00 GMT", Some(s(60))),
            ("Wed Oct 21 07:29:00 2015", Some(s(60))),
            // In the past: no wait.
            ("Tue, 20 Oct 2015 07:28:00 GMT", Some(s(0))),
            ("", None),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
            ("99999999999999999999999", None),
            ("Wed, 21 Oct 2015 25:28:00 GMT", None),
        ] {
            assert_eq!(parse_retry_after(value, t0()), want, "{value:?}");
        }
    }

    proptest! {
        #[test]
        fn past_dates_are_zero(back in 0u64..3_000_000_000) {
            let now = t0();
            let at = now - Duration::from_secs(back.min(1_445_412_480));
            let value = httpdate::fmt_http_date(at);
            prop_assert_eq!(parse_retry_after(&value, now), Some(Duration::ZERO));
        }

        #[test]
        fn future_dates_are_the_distance(ahead in 0u64..1_000_000_000) {
            let now = t0();
            let value = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
            prop_assert_eq!(parse_retry_after(&value, now), Some(Duration::from_secs(ahead)));
        }

        #[test]
        fn seconds_round_trip(secs in any::<u64>()) {
            prop_assert_eq!(parse_retry_after(&secs.to_string(), t0()), Some(Duration::from_secs(secs)));
        }

        #[test]
        fn garbage_is_none(value in "[a-zA-Z ,:;.-]{0,40}") {
            // Letters and punctuation alone never make a valid date (it needs digits).
            prop_assert_eq!(parse_retry_after(&value, t0()), None);
        }

        #[test]
        fn never_panics(value in any::<String>()) {
            let _ = parse_retry_after(&value, t0());
        }
    }
}
