//! Which HTTP statuses are worth another try.

/// How a response status is treated by a retrying sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: delivered. (What a particular 2xx means, e.g. 202 Accepted, is the caller's.)
    Success,
    /// 429: the receiver is rate limiting; retry, preferably after its `Retry-After`.
    RateLimited,
    /// 408, 425, 5xx: a transient failure; try again later.
    Retryable,
    /// Everything else: other 4xx (the request itself is wrong), 3xx (redirects are not
    /// followed), 1xx and out-of-range codes. Trying again would get the same answer.
    Final,
}

impl StatusClass {
    /// Whether another try may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retryable | Self::RateLimited)
    }
}

/// Classifies a response status code.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        429 => StatusClass::RateLimited,
        408 | 425 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        use StatusClass::*;
        let table: &[(&[u16], StatusClass)] = &[
            (&[200, 201, 202, 204, 299], Success),
            (&[429], RateLimited),
            (&[408, 425, 500, 502, 503, 504, 599], Retryable),
            (
                &[
                    0, 100, 199, 301, 302, 304, 400, 401, 403, 404, 409, 410, 422, 600,
                ],
                Final,
            ),
        ];
        for (codes, class) in table {
            for &code in *codes {
                assert_eq!(classify(code), *class, "{code}");
                assert_eq!(
                    classify(code).is_retryable(),
                    matches!(class, RateLimited | Retryable),
                    "{code}"
                );
            }
        }
    }
}
