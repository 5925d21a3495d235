//! Per-app, per-method rate limits of the calendar and contact endpoints.
//!
//! Lark limits each of these methods separately, per app: "1000 次/分钟、50 次/秒"
//! (the 接口频率限制 row of every page, e.g. open.feishu.cn/document/server-docs/
//! calendar-v4/calendar-event/create and .../contact-v3/user/batch_get_id). Over the
//! limit the calendar API answers HTTP 429 with its own code 190005 "app rate limited"
//! (the 错误码 table of the same pages); the simulator also sends the gateway's
//! `x-ogw-ratelimit-reset` header, as every Open API answer past the gateway carries it.
//! Windows are `(now - len, now]` on the simulator (tokio) clock, as for reserve apply.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use tokio::time::Instant;

use super::lark_error;

/// Default per-method limit per second.
pub const DEFAULT_PER_SECOND: u32 = 50;
/// Default per-method limit per minute.
pub const DEFAULT_PER_MINUTE: u32 = 1000;

/// Calendar: "app rate limited" (HTTP 429).
pub const CODE_APP_RATE_LIMITED: i64 = 190005;

/// Start times of recent calls, per method, under one pair of limits.
#[derive(Debug)]
pub(crate) struct MethodLimits {
    per_second: u32,
    per_minute: u32,
    starts: HashMap<&'static str, VecDeque<Instant>>,
}

impl Default for MethodLimits {
    fn default() -> Self {
        MethodLimits {
            per_second: DEFAULT_PER_SECOND,
            per_minute: DEFAULT_PER_MINUTE,
            starts: HashMap::new(),
        }
    }
}

impl MethodLimits {
    /// Limits per second and per minute for every method (0 = none).
    pub(crate) fn new(per_second: u32, per_minute: u32) -> Self {
        MethodLimits {
            per_second,
            per_minute,
            starts: HashMap::new(),
        }
    }

    /// New limits for every method (0 = none).
    pub(crate) fn set(&mut self, per_second: u32, per_minute: u32) {
        self.per_second = per_second;
        self.per_minute = per_minute;
    }

    /// Takes a slot for `method`, or answers how many whole seconds until one frees.
    pub(crate) fn take(&mut self, method: &'static str, now: Instant) -> Result<(), u64> {
        let minute = Duration::from_secs(60);
        let starts = self.starts.entry(method).or_default();
        while starts.front().is_some_and(|&t| t + minute <= now) {
            starts.pop_front();
        }
        let mut free_at: Option<Instant> = None;
        for (max, window) in [
            (self.per_second as usize, Duration::from_secs(1)),
            (self.per_minute as usize, minute),
        ] {
            if max == 0 {
                continue;
            }
            let in_window = starts
                .iter()
                .rev()
                .take_while(|&&t| t + window > now)
                .count();
            if in_window >= max {
                let at = starts[starts.len() - max] + window;
                free_at = Some(free_at.map_or(at, |f| f.max(at)));
            }
        }
        match free_at {
            None => {
                starts.push_back(now);
                Ok(())
            }
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                Err(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }
}

/// The 429 answer of a rate-limited calendar or contact call.
pub(crate) fn rate_limited(reset_secs: u64) -> Response {
    let mut response = lark_error(
        StatusCode::TOO_MANY_REQUESTS,
        CODE_APP_RATE_LIMITED,
        "app rate limited",
    );
    response.headers_mut().insert(
        "x-ogw-ratelimit-reset",
        HeaderValue::from_str(&reset_secs.to_string()).expect("digits"),
    );
    response
}
