//! The Lark client: app and tenant tokens ([`app_token`]), user OAuth ([`oauth`]), VC
//! reservations ([`vc`]: with the host's token, or the app's for an owner), what happened
//! in a meeting ([`meetings`]), bot messages to users and group chats ([`messages`]), the
//! host's calendar ([`calendar`]), email → open_id lookups ([`contact`]), app-wide pacing
//! ([`pacing`]), the redacted user token types ([`secret`]), and the long connection
//! that brings the app's events ([`events`], with its own WebSocket and bootstrap call).
//!
//! It owns every HTTP exchange with Lark: one `reqwest` client built once (timeouts, a
//! user agent, no redirects), error classification into [`LarkError`], and retries
//! through the one retry helper ([`crate::retry::with_retry`]). It decides nothing about
//! bookings or trainers, stores nothing, and never logs or returns a token, a secret or
//! a request body.

pub mod app_token;
pub mod calendar;
pub mod contact;
pub mod error;
pub mod events;
pub mod meetings;
pub mod messages;
pub mod oauth;
pub mod pacing;
pub mod secret;
pub mod vc;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

use crate::config::{LarkSettings, OAuthVersion, Settings};
use crate::metrics::{names, Metrics};
use crate::retry::RetryPolicy;

pub use calendar::{CalendarEvent, EventAttendee, EventTime, NewCalendarEvent};
pub use error::{GrantFailure, LarkError};
pub use events::{EventSink, EventsError, LarkEvent, LongConnection, SinkError};
pub use meetings::{MeetingAuth, MeetingBrief, MeetingDetail, Participant};
pub use oauth::{LarkUser, TokenGrant};
pub use pacing::Pacer;
pub use vc::{ApplyError, ApplyLedger, NotRecorded, Reserve};

use app_token::TokenCache;
use error::{classify, lenient_i64, truncate, ErrorContext};

/// Time allowed to open a connection to Lark.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one whole request; a little under the retry helper's per-attempt
/// timeout so reqwest reports the timeout first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);
/// Sent on every request so Lark's logs name us.
const USER_AGENT: &str = concat!("lark-vc-bridge/", env!("CARGO_PKG_VERSION"));

/// The Lark client. Cheap to clone: every clone shares one HTTP client, one token cache,
/// one pacer and one set of call counters.
#[derive(Clone)]
pub struct LarkClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Open API base, parsed once: a request's URL is this with its path set, so that the
    /// host is not parsed again for every request (that parse, with its IDNA pass, was
    /// about 3 % of the service's CPU in the benchmark's burst).
    base_url: Url,
    /// The base's own path without a trailing slash ("" for a bare host): the prefix of
    /// every request's path.
    base_path: String,
    accounts_url: Url,
    app_id: String,
    app_secret: SecretString,
    oauth_version: OAuthVersion,
    scopes: Vec<String>,
    policy: RetryPolicy,
    tenant_token: TokenCache,
    app_token: TokenCache,
    apply_pacer: Pacer,
    /// `meetings.auto_record` for new reservations.
    auto_record: bool,
    /// One pacer per calendar method: Lark limits each method separately.
    calendar_pacers: calendar::Pacers,
    contact_pacer: Pacer,
    /// One pacer per meetings method.
    meetings_pacers: meetings::Pacers,
    counts: Counters,
    /// Where request durations go, once the app attaches its metrics.
    metrics: OnceLock<Metrics>,
}

impl fmt::Debug for LarkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LarkClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("app_id", &self.inner.app_id)
            .field("oauth_version", &self.inner.oauth_version)
            .finish_non_exhaustive()
    }
}

/// How many HTTP requests (attempts, retries included) the client sent, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LarkCallCounts {
    /// `POST /open-apis/auth/v3/tenant_access_token/internal`.
    pub tenant_token: u64,
    /// `POST /open-apis/auth/v3/app_access_token/internal` (v1 OIDC only).
    pub app_token: u64,
    /// Authorization code exchanges (v2 or v1).
    pub token_exchange: u64,
    /// Refresh-token grants (v2 or v1).
    pub refresh: u64,
    /// `GET /open-apis/authen/v1/user_info`.
    pub user_info: u64,
    /// `POST /open-apis/vc/v1/reserves/apply`.
    pub apply: u64,
    /// `PUT /open-apis/vc/v1/reserves/{id}`.
    pub update: u64,
    /// `DELETE /open-apis/vc/v1/reserves/{id}`.
    pub delete: u64,
    /// `GET /open-apis/vc/v1/reserves/{id}`.
    pub get: u64,
    /// `POST /open-apis/im/v1/messages`.
    pub message: u64,
    /// `POST /open-apis/calendar/v4/calendars/primary`.
    pub calendar_primary: u64,
    /// `POST /open-apis/calendar/v4/calendars/{id}/events`.
    pub event_create: u64,
    /// `PATCH /open-apis/calendar/v4/calendars/{id}/events/{event_id}`.
    pub event_patch: u64,
    /// `GET /open-apis/calendar/v4/calendars/{id}/events/{event_id}`.
    pub event_get: u64,
    /// `DELETE /open-apis/calendar/v4/calendars/{id}/events/{event_id}`.
    pub event_delete: u64,
    /// `POST /open-apis/calendar/v4/calendars/{id}/events/{event_id}/attendees`.
    pub event_attendees: u64,
    /// `POST /open-apis/contact/v3/users/batch_get_id`.
    pub batch_get_id: u64,
    /// `GET /open-apis/im/v1/chats/{chat_id}/members/is_in_chat` (`check`).
    pub chat_membership: u64,
    /// `GET /open-apis/vc/v1/meetings/{meeting_id}`.
    pub meeting_get: u64,
    /// `GET /open-apis/vc/v1/meetings/list_by_no`.
    pub meetings_by_no: u64,
}

/// Kinds of request, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    TenantToken,
    AppToken,
    TokenExchange,
    Refresh,
    UserInfo,
    Apply,
    Update,
    Delete,
    Get,
    Message,
    CalendarPrimary,
    EventCreate,
    EventPatch,
    EventGet,
    EventDelete,
    EventAttendees,
    BatchGetId,
    ChatMembership,
    MeetingGet,
    MeetingsByNo,
}

impl CallKind {
    /// The `operation` label of the request-duration histogram.
    fn operation(self) -> &'static str {
        match self {
            CallKind::TenantToken => "tenant_token",
            CallKind::AppToken => "app_token",
            CallKind::TokenExchange => "token_exchange",
            CallKind::Refresh => "token_refresh",
            CallKind::UserInfo => "user_info",
            CallKind::Apply => "reserve_apply",
            CallKind::Update => "reserve_update",
            CallKind::Delete => "reserve_delete",
            CallKind::Get => "reserve_get",
            CallKind::Message => "message",
            CallKind::CalendarPrimary => "calendar_primary",
            CallKind::EventCreate => "event_create",
            CallKind::EventPatch => "event_patch",
            CallKind::EventGet => "event_get",
            CallKind::EventDelete => "event_delete",
            CallKind::EventAttendees => "event_attendees",
            CallKind::BatchGetId => "batch_get_id",
            CallKind::ChatMembership => "chat_membership",
            CallKind::MeetingGet => "meeting_get",
            CallKind::MeetingsByNo => "meetings_by_no",
        }
    }
}

#[derive(Default)]
struct Counters([AtomicU64; 20]);

impl Counters {
    fn bump(&self, kind: CallKind) {
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LarkCallCounts {
        let get = |k: CallKind| self.0[k as usize].load(Ordering::Relaxed);
        LarkCallCounts {
            tenant_token: get(CallKind::TenantToken),
            app_token: get(CallKind::AppToken),
            token_exchange: get(CallKind::TokenExchange),
            refresh: get(CallKind::Refresh),
            user_info: get(CallKind::UserInfo),
            apply: get(CallKind::Apply),
            update: get(CallKind::Update),
            delete: get(CallKind::Delete),
            get: get(CallKind::Get),
            message: get(CallKind::Message),
            calendar_primary: get(CallKind::CalendarPrimary),
            event_create: get(CallKind::EventCreate),
            event_patch: get(CallKind::EventPatch),
            event_get: get(CallKind::EventGet),
            event_delete: get(CallKind::EventDelete),
            event_attendees: get(CallKind::EventAttendees),
            batch_get_id: get(CallKind::BatchGetId),
            chat_membership: get(CallKind::ChatMembership),
            meeting_get: get(CallKind::MeetingGet),
            meetings_by_no: get(CallKind::MeetingsByNo),
        }
    }
}

impl LarkClient {
    /// The service's client: the consent page asks for [`Settings::requested_scopes`]
    /// and new reservations carry `meetings.auto_record`.
    pub fn for_service(settings: &Settings) -> Result<LarkClient, LarkError> {
        Self::build(
            &settings.lark,
            RetryPolicy::default(),
            settings.requested_scopes(),
            settings.meetings.auto_record,
        )
    }

    /// A client from the `[lark]` settings alone: every scope of `lark.scopes` asked
    /// for, `auto_record` off (tests of the client itself).
    pub fn new(settings: &LarkSettings) -> Result<LarkClient, LarkError> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    /// As [`LarkClient::new`], with a chosen retry policy (tests, the benchmark).
    pub fn with_retry_policy(
        settings: &LarkSettings,
        policy: RetryPolicy,
    ) -> Result<LarkClient, LarkError> {
        Self::build(settings, policy, settings.scopes.clone(), false)
    }

    fn build(
        settings: &LarkSettings,
        policy: RetryPolicy,
        scopes: Vec<String>,
        auto_record: bool,
    ) -> Result<LarkClient, LarkError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A token endpoint that redirects is misconfigured or hostile: never follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LarkError::Transport(format!("building the HTTP client: {e}")))?;
        Ok(LarkClient {
            inner: Arc::new(Inner {
                http,
                base_url: settings.base_url.clone(),
                base_path: settings.base_url.path().trim_end_matches('/').to_string(),
                accounts_url: settings.accounts_url.clone(),
                app_id: settings.app_id.clone(),
                app_secret: settings.app_secret.clone(),
                oauth_version: settings.oauth_version,
                scopes,
                policy,
                tenant_token: TokenCache::default(),
                app_token: TokenCache::default(),
                apply_pacer: Pacer::for_reserve_apply(),
                auto_record,
                calendar_pacers: calendar::Pacers::default(),
                contact_pacer: Pacer::at_standard_limits(),
                meetings_pacers: meetings::Pacers::default(),
                counts: Counters::default(),
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Records the duration of every request from now on in `metrics` (the first call
    /// wins; every clone shares it).
    pub fn record_metrics_in(&self, metrics: &Metrics) {
        let _ = self.inner.metrics.set(metrics.clone());
    }

    /// Requests sent so far, per kind (retries included).
    pub fn call_counts(&self) -> LarkCallCounts {
        self.inner.counts.snapshot()
    }

    /// `{base_url}{path}`: `path` starts with `/` and holds no query (ids in it are
    /// checked before they get there).
    fn url(&self, path: &str) -> Url {
        let mut url = self.inner.base_url.clone();
        url.set_path(&format!("{}{path}", self.inner.base_path));
        url
    }

    /// Sends one request. On failure also says whether the request may have reached
    /// Lark (false only when the connection could not be made), which matters for
    /// calls that are not idempotent.
    async fn send(
        &self,
        kind: CallKind,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, SendFailure> {
        self.inner.counts.bump(kind);
        let started = Instant::now();
        let answer = self.send_once(request).await;
        if let Some(m) = self.inner.metrics.get() {
            m.observe(
                names::LARK_REQUEST_DURATION,
                &[("operation", kind.operation())],
                started.elapsed().as_secs_f64(),
            );
        }
        answer
    }

    /// [`LarkClient::send`] without the bookkeeping.
    async fn send_once(&self, request: reqwest::RequestBuilder) -> Result<Answer, SendFailure> {
        let response = request.send().await.map_err(SendFailure::from_reqwest)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("x-ogw-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(error::rate_limit_reset);
        let body = crate::outbound::read_capped(response, crate::outbound::LARK_BODY_CAP)
            .await
            .map_err(|e| match e {
                crate::outbound::ReadError::Transport(e) => SendFailure::from_reqwest(e),
                // Lark answered (and so may have acted): never replayed blindly.
                crate::outbound::ReadError::TooLarge { cap } => SendFailure {
                    error: LarkError::Unexpected {
                        status,
                        body: crate::outbound::ReadError::too_large_text(cap),
                    },
                    may_have_reached: true,
                },
            })?;
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// Sends and decodes, for calls where a retry is always safe.
    async fn exchange<T: DeserializeOwned>(
        &self,
        kind: CallKind,
        ctx: ErrorContext,
        sensitive: Sensitivity,
        request: reqwest::RequestBuilder,
    ) -> Result<T, LarkError> {
        let answer = self.send(kind, request).await.map_err(|f| f.error)?;
        answer.decode(ctx, sensitive)
    }

    /// One Open API call with a user token, retried by the one retry helper (the request
    /// is rebuilt for each attempt).
    async fn user_call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        kind: CallKind,
        sensitive: Sensitivity,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, LarkError> {
        crate::retry::with_retry(&self.inner.policy, what, || {
            self.exchange(kind, ErrorContext::Api, sensitive, request())
        })
        .await
    }
}

/// Longest wait for a pacer slot: one full minute window, plus margin. A request that
/// waits for its slot has not been sent, so the wait must not count against the attempt's
/// timeout (reqwest's own request timeout still bounds the HTTP call itself).
const PACER_WAIT_ALLOWANCE: Duration = Duration::from_secs(62);

impl LarkClient {
    /// The client's retry policy with room for a pacer wait in each attempt.
    fn paced_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempt_timeout: self.inner.policy.attempt_timeout + PACER_WAIT_ALLOWANCE,
            ..self.inner.policy.clone()
        }
    }

    /// One call Lark limits per app and method, safe to repeat (idempotent at Lark), with
    /// a user token: each attempt waits for a slot of `pacer`, then is sent and decoded.
    async fn paced_user_call<T: DeserializeOwned>(
        &self,
        what: &str,
        kind: CallKind,
        pacer: &Pacer,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, LarkError> {
        crate::retry::with_retry(&self.paced_policy(), what, || async {
            let _slot = pacer.acquire().await;
            self.exchange(kind, ErrorContext::Api, Sensitivity::Plain, request())
                .await
        })
        .await
    }

    /// One call with the tenant access token, safe to repeat. A token Lark calls invalid is
    /// dropped from the cache so the retry fetches a fresh one. `pacer`, when given, is
    /// waited on before each attempt.
    async fn tenant_call<T: DeserializeOwned>(
        &self,
        what: &str,
        kind: CallKind,
        sensitive: Sensitivity,
        pacer: Option<&Pacer>,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<T, LarkError> {
        use secrecy::ExposeSecret;
        crate::retry::with_retry(&self.paced_policy(), what, || async {
            let token: SecretString = self.tenant_token().await?;
            let _slot = match pacer {
                Some(pacer) => Some(pacer.acquire().await),
                None => None,
            };
            let result = self
                .exchange(
                    kind,
                    ErrorContext::Api,
                    sensitive,
                    request(token.expose_secret()),
                )
                .await;
            if let Err(LarkError::Retryable { code, .. }) = &result {
                if *code == error::CODE_TENANT_TOKEN_INVALID {
                    self.forget_tenant_token(&token).await;
                }
            }
            result
        })
        .await
    }
}

/// Whether a response body may carry a token (then it is never kept in an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sensitivity {
    /// Token endpoints: a body that fails to parse is reported by size only.
    Secret,
    /// Everything else: an unparseable body is kept, truncated.
    Plain,
}

/// A request that failed before Lark answered.
struct SendFailure {
    error: LarkError,
    /// False only when no connection was made, so Lark cannot have acted on it.
    may_have_reached: bool,
}

impl SendFailure {
    fn from_reqwest(e: reqwest::Error) -> SendFailure {
        let may_have_reached = !e.is_connect();
        let error = if e.is_timeout() {
            LarkError::Timeout
        } else {
            // without_url: the URL carries no secret today, but keep errors URL-free anyway.
            // The source chain says what actually failed ("Connection refused").
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            LarkError::Transport(truncate(&text))
        };
        SendFailure {
            error,
            may_have_reached,
        }
    }
}

/// A failed attempt at a call that must not be replayed once it may have reached Lark:
/// an apply (each creates a meeting) or a grant (codes and refresh tokens are single use,
/// so a replay can only come back "already used"). Timeouts and transport errors after a
/// connection was made are therefore final; answered errors keep their own hint.
struct NotReplayable {
    error: LarkError,
    may_have_reached: bool,
    /// The caller could not record the request before it would have left (rule 23):
    /// nothing was sent, and nothing may be until it can.
    unrecorded: bool,
}

impl NotReplayable {
    fn unanswered(f: SendFailure) -> NotReplayable {
        NotReplayable {
            error: f.error,
            may_have_reached: f.may_have_reached,
            unrecorded: false,
        }
    }

    fn answered(error: LarkError) -> NotReplayable {
        NotReplayable {
            error,
            may_have_reached: true,
            unrecorded: false,
        }
    }

    fn not_sent(error: LarkError) -> NotReplayable {
        NotReplayable {
            error,
            may_have_reached: false,
            unrecorded: false,
        }
    }

    fn unrecorded() -> NotReplayable {
        NotReplayable {
            error: LarkError::Transport("not sent: the apply could not be recorded first".into()),
            may_have_reached: false,
            unrecorded: true,
        }
    }
}

impl std::fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl crate::retry::Retryable for NotReplayable {
    fn retry_hint(&self) -> crate::retry::RetryHint {
        match self.error {
            _ if self.unrecorded => crate::retry::RetryHint::Never,
            LarkError::Timeout | LarkError::Transport(_) if self.may_have_reached => {
                crate::retry::RetryHint::Never
            }
            _ => self.error.retry_hint(),
        }
    }

    fn timed_out(after: Duration) -> Self {
        NotReplayable::answered(LarkError::timed_out(after))
    }
}

/// One HTTP answer from Lark.
struct Answer {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// The fields every Lark answer may carry, success or not: `{code, msg, data}` on the Open
/// API, flat `{code, error, error_description}` on the v2 token endpoint.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "lenient_i64")]
    code: Option<i64>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `{data: T}`, the wrapper of Open API success bodies.
#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

impl Answer {
    fn is_success_status(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parses a success body into `T`, or turns the answer into a classified error.
    fn decode<T: DeserializeOwned>(
        &self,
        ctx: ErrorContext,
        sensitive: Sensitivity,
    ) -> Result<T, LarkError> {
        let envelope = match serde_json::from_slice::<Envelope>(&self.body) {
            Ok(envelope) => envelope,
            Err(_) => return Err(self.unparseable(sensitive)),
        };
        let ok = match envelope.code {
            Some(code) => code == 0,
            None => envelope.error.is_none(),
        };
        if ok && self.is_success_status() {
            return serde_json::from_slice::<T>(&self.body)
                .map_err(|_| self.unparseable(sensitive));
        }
        let msg = envelope
            .error_description
            .or(envelope.msg)
            .unwrap_or_default();
        let oauth_error = envelope.error.as_ref().and_then(|e| e.as_str());
        Err(classify(
            ctx,
            self.status,
            envelope.code,
            msg,
            oauth_error,
            self.retry_after,
        ))
    }

    fn unparseable(&self, sensitive: Sensitivity) -> LarkError {
        if self.status == 429 {
            return classify(
                ErrorContext::Api,
                429,
                None,
                String::new(),
                None,
                self.retry_after,
            );
        }
        let text = match sensitive {
            Sensitivity::Secret => format!("[{} bytes withheld: token endpoint]", self.body.len()),
            Sensitivity::Plain => truncate(&String::from_utf8_lossy(&self.body)),
        };
        if self.status >= 500 {
            LarkError::Server {
                status: self.status,
                code: None,
                msg: text,
            }
        } else {
            LarkError::Unexpected {
                status: self.status,
                body: text,
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support;
