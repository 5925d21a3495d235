//! The one retry helper: a per-attempt timeout, an explicit classification of each error
//! (retry or not), exponential backoff with jitter and a cap (from `backon`), and server
//! hints (Lark's `x-ogw-ratelimit-reset`) taking precedence over the computed delay, capped
//! by [`RetryPolicy::max_hinted_delay`]. Loops that wait between attempts of their own take
//! their delays from here too: the streaming client (which follows Salesforce's `advice`,
//! capped there) and the processor's failed batches from [`backoff`], and the durable
//! per-booking retry list, whose attempts outlive any one loop, from [`delay_for_attempt`].

use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Permanent: retrying cannot help (bad input, permission, not found).
    Never,
    /// Transient: retry after the computed backoff.
    Backoff,
    /// The server said when: wait this long (a rate-limit reset), up to the policy's cap.
    After(Duration),
}

/// Errors the retry helper can classify.
pub trait Retryable: Sized {
    /// Whether and when to try again.
    fn retry_hint(&self) -> RetryHint;
    /// The error to report when one attempt exceeded the per-attempt timeout.
    fn timed_out(after: Duration) -> Self;
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: usize,
    /// First backoff delay.
    pub initial_delay: Duration,
    /// Cap on one backoff delay.
    pub max_delay: Duration,
    /// Cap on a server-hinted wait (a bogus reset header must not stall us for hours).
    pub max_hinted_delay: Duration,
    /// Time allowed for one attempt.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts, 200 ms doubling to at most 10 s, 30 s per attempt: long enough to
    /// ride out a Salesforce or Lark blip, short enough that a booking is not held for
    /// minutes.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_hinted_delay: Duration::from_secs(120),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Endless jittered exponential delays from `min`, doubling up to `max` (backon's): every
/// loop in the service that waits between attempts takes its delays from here.
pub fn backoff(min: Duration, max: Duration) -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The timer instant of a wall-clock time kept in the store (a due retry, an attendance
/// row's work): now for one already past.
pub fn timer_at(at: chrono::DateTime<chrono::Utc>) -> tokio::time::Instant {
    let wait = at
        .signed_duration_since(chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + wait
}

/// The wait before attempt `attempt + 1` of something retried across restarts (so no
/// iterator can carry the count): doubling from `base`, capped at `max`, with "equal
/// jitter" (between half and all of it) so that many failing at once spread out.
pub fn delay_for_attempt(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponential = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exponential
        .min(max)
        .mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0))
}

/// Runs `op` until it succeeds, fails permanently, or the attempts are spent.
/// `what` names the operation in log lines (never put a secret in it).
pub async fn with_retry<T, E, F, Fut>(policy: &RetryPolicy, what: &str, mut op: F) -> Result<T, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = backoff(policy.initial_delay, policy.max_delay);
    let mut attempt = 0usize;
    loop {
        attempt += 1;
        let outcome = match tokio::time::timeout(policy.attempt_timeout, op()).await {
            Ok(result) => result,
            Err(_) => Err(E::timed_out(policy.attempt_timeout)),
        };
        let err = match outcome {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let computed = delays.next().unwrap_or(policy.max_delay);
        let wait = match err.retry_hint() {
            RetryHint::Never => return Err(err),
            RetryHint::Backoff => computed,
            RetryHint::After(hint) => hint.min(policy.max_hinted_delay),
        };
        if attempt >= policy.max_attempts {
            tracing::warn!(operation = what, attempt, error = %err, "giving up after retries");
            return Err(err);
        }
        tracing::info!(
            operation = what,
            attempt,
            wait_ms = wait.as_millis() as u64,
            error = %err,
            "retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;
