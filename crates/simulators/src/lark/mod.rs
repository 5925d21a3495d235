//! Lark simulator (design §5): a stateful fake of the Lark Open API and accounts host on
//! one loopback base URL, speaking Lark's real wire formats so the real client (or any
//! third-party client) works against it unchanged.
//!
//! It serves the app/tenant token endpoints, the authorize page (approving as one of its
//! users, or denying), the v2 and v1 user-token endpoints with single-use refresh tokens,
//! `user_info`, VC reserves (apply/get/update/delete, owner checks, 30-day limit, the
//! per-app rate limit of 50/s and 1000/min; tenant-token reserves with `owner_id`), bot
//! messages to users and group chats (uuid dedup), the primary calendar, events and
//! attendees of Calendar v4 ([`calendar`]), `contact/v3/users/batch_get_id`
//! ([`contact`]), event delivery over the long connection ([`events`]: the
//! `/callback/ws/endpoint` bootstrap and its `pbbp2` WebSocket on the same port), and a
//! reserved meeting's life ([`meetings`]: start, join, leave, end, recording, each raising
//! its `vc.meeting.*` event; `meetings/:id` and `list_by_no`; simulator-only `/sim/`
//! endpoints to drive it). Test knobs expire or revoke a user's tokens, change lifetimes and
//! limits, withdraw app scopes and make a user's calendar read-only; every request is
//! recorded ([`RequestLog`]) and faults can be injected ([`Faults`]).
//!
//! Time: lifetimes, code expiry and rate-limit windows use `tokio::time::Instant`, so
//! tests on a paused clock control them; reservation end times are unix seconds of the
//! wall clock, as in Lark. Not used by the service's production path.

pub mod calendar;
pub mod contact;
pub mod events;
mod im;
pub mod meetings;
mod oauth;
pub mod rate;
mod vc;

pub use calendar::{SimAttendee, SimEvent, SimTime};
pub use events::LongConnection;
pub use meetings::{LeaveReason, MeetingError, MeetingLife, Person, SimMeeting, SimParticipant};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::common::{serve, Recorder, RunningServer};
use super::{Faults, RequestLog, LARK_APP_ID, LARK_APP_SECRET};

/// Default user access token lifetime (seconds), as Lark issues it.
pub const DEFAULT_ACCESS_SECS: i64 = 7200;
/// Default refresh token lifetime (seconds), as seen from the v2 endpoint (7 days).
pub const DEFAULT_REFRESH_SECS: i64 = 604_800;
/// Lifetime of a tenant or app access token (seconds).
pub const APP_TOKEN_SECS: i64 = 7200;
/// Lark hands out a new tenant/app token only when the current one has less than this left.
pub const APP_TOKEN_REUSE_MIN_SECS: i64 = 1800;
/// Authorization codes live 5 minutes and are single use.
pub const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// Reservations may end at most this far ahead.
pub const MAX_RESERVE_AHEAD_SECS: i64 = 30 * 86_400;
/// Default per-app limits on reserve apply.
pub const DEFAULT_APPLY_PER_SECOND: u32 = 50;
/// Default per-app limits on reserve apply.
pub const DEFAULT_APPLY_PER_MINUTE: u32 = 1000;
/// A message uuid suppresses repeats for this long.
pub const MESSAGE_DEDUP_WINDOW: Duration = Duration::from_secs(3600);
/// Tenant key of the simulated tenant.
pub const SIM_TENANT_KEY: &str = "736588c9260f175d";
/// Verification token of the simulated app: `header.token` of every event it raises.
pub const SIM_VERIFICATION_TOKEN: &str = "simVerificationToken0123456789ab";

/// The `msg` of a call refused by [`LarkSim::fail_user_calls`].
const USER_FAULT_MSG: &str = "internal error (simulated for this user)";

/// A user of the simulated tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    /// `ou_…`, the id the service stores.
    pub open_id: String,
    /// `on_…`.
    pub union_id: String,
    /// Tenant-wide user id (returned only with the employee-id scope).
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Login email (returned with `contact:user.email:readonly`).
    pub email: String,
    /// Work mailbox; messages and the authorize page accept it as well.
    pub enterprise_email: Option<String>,
}

/// A reservation as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReserve {
    /// 19-digit reserve id.
    pub id: String,
    /// open_id of the host: the user whose token applied, or the `owner_id` of a
    /// tenant-token apply.
    pub owner_open_id: String,
    /// 9-digit meeting number.
    pub meeting_no: String,
    /// `https://vc.larksuite.com/j/<meeting_no>`.
    pub url: String,
    /// Unix seconds.
    pub end_time: i64,
    /// `meeting_settings.topic`.
    pub topic: Option<String>,
    /// `meeting_settings.auto_record` as applied (None when left out).
    pub auto_record: Option<bool>,
    /// Deleted through the API (kept so tests can see it).
    pub deleted: bool,
    /// When the apply request was accepted (simulator clock), for pacing checks.
    pub applied_at: Instant,
    /// Applied with the tenant token (for `owner_open_id`), not the owner's own token.
    pub applied_by_app: bool,
}

/// A bot message the simulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// `email`, `open_id` or `chat_id`, from the query string.
    pub receive_id_type: String,
    /// The recipient, as sent.
    pub receive_id: String,
    /// `text`, `post`, `interactive`…
    pub msg_type: String,
    /// The `text` of a text message's content.
    pub text: String,
    /// The dedup key, when sent.
    pub uuid: Option<String>,
    /// `om_…`, as returned to the sender.
    pub message_id: String,
}

/// A group chat of the simulated tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimChat {
    /// `oc_…`.
    pub chat_id: String,
    /// Display name.
    pub name: String,
    /// Whether the app's bot is a member (only then may it post there).
    pub bot_is_member: bool,
}

/// The running Lark simulator. Clones share state; the server stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct LarkSim {
    shared: Arc<Shared>,
    log: RequestLog,
    faults: Faults,
    server: Arc<RunningServer>,
    /// Ends the long connection's dispatcher and sockets with the last clone.
    _events: Arc<events::Stopper>,
}

/// State shared with the handlers.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Event delivery over the long connection (its own lock: never taken with `state`
    /// held).
    long_connection: LongConnection,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("lark sim state")
    }
}

#[derive(Debug)]
struct AuthCode {
    open_id: String,
    redirect_uri: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: String,
    /// `sim_tenant`: the user signs in as a member of this tenant instead of the
    /// simulated one (a simulator-only extension, like `sim_user`).
    tenant_key: Option<String>,
    issued_at: Instant,
    used: bool,
}

#[derive(Debug)]
struct UserAccess {
    open_id: String,
    scope: String,
    /// Another tenant than [`SIM_TENANT_KEY`] (see `AuthCode::tenant_key`).
    tenant_key: Option<String>,
    expires_at: Instant,
    expired: bool,
    revoked: bool,
}

#[derive(Debug)]
struct UserRefresh {
    open_id: String,
    scope: String,
    tenant_key: Option<String>,
    expires_at: Instant,
    expired: bool,
    revoked: bool,
    used: bool,
    /// Issued by a v1 OIDC endpoint: the v2 endpoint refuses these (20026).
    from_v1: bool,
}

/// Tenant or app tokens: the current one, and every one still valid.
#[derive(Debug, Default)]
struct AppTokens {
    current: Option<String>,
    valid: HashMap<String, Instant>,
}

impl AppTokens {
    /// Lark's rule: the same token while it has ≥ 30 min left, else a new one.
    fn issue(&mut self, now: Instant) -> (String, i64) {
        if let Some(token) = &self.current {
            if let Some(&expires_at) = self.valid.get(token) {
                let left = expires_at.saturating_duration_since(now).as_secs() as i64;
                if left >= APP_TOKEN_REUSE_MIN_SECS {
                    return (token.clone(), left);
                }
            }
        }
        let token = format!("t-{}", crate::wire::random_hex(100));
        self.valid.insert(
            token.clone(),
            now + Duration::from_secs(APP_TOKEN_SECS as u64),
        );
        self.current = Some(token.clone());
        (token, APP_TOKEN_SECS)
    }

    fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.valid.get(token).is_some_and(|&at| at > now)
    }
}

#[derive(Debug)]
struct State {
    users: Vec<SimUser>,
    codes: HashMap<String, AuthCode>,
    access: HashMap<String, UserAccess>,
    refresh: HashMap<String, UserRefresh>,
    current: HashMap<String, (String, Option<String>)>,
    access_secs: i64,
    refresh_secs: i64,
    tenant_tokens: AppTokens,
    app_tokens: AppTokens,
    reserves: Vec<SimReserve>,
    messages: Vec<SimMessage>,
    sent_uuids: HashMap<String, (Instant, Value)>,
    apply_per_second: u32,
    apply_per_minute: u32,
    apply_times: VecDeque<Instant>,
    calendars: calendar::Calendars,
    /// Per-method limits of the calendar and contact endpoints.
    api_limits: rate::MethodLimits,
    chats: Vec<SimChat>,
    /// App (tenant-identity) scopes withdrawn by a test: calls needing them get 99991672.
    denied_app_scopes: HashSet<String>,
    /// Users whose every user-token call is refused with (status, code).
    failing_users: HashMap<String, (StatusCode, i64)>,
    /// Meetings of the reservations ([`meetings`]).
    meetings: meetings::Meetings,
    /// `meetings/list_by_no` has its own limit, 100 per minute.
    list_by_no_limits: rate::MethodLimits,
}

impl Default for State {
    fn default() -> Self {
        State {
            users: Vec::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            current: HashMap::new(),
            access_secs: DEFAULT_ACCESS_SECS,
            refresh_secs: DEFAULT_REFRESH_SECS,
            tenant_tokens: AppTokens::default(),
            app_tokens: AppTokens::default(),
            reserves: Vec::new(),
            messages: Vec::new(),
            sent_uuids: HashMap::new(),
            apply_per_second: DEFAULT_APPLY_PER_SECOND,
            apply_per_minute: DEFAULT_APPLY_PER_MINUTE,
            apply_times: VecDeque::new(),
            calendars: calendar::Calendars::default(),
            api_limits: rate::MethodLimits::default(),
            chats: Vec::new(),
            denied_app_scopes: HashSet::new(),
            failing_users: HashMap::new(),
            meetings: meetings::Meetings::default(),
            list_by_no_limits: rate::MethodLimits::new(0, meetings::rest::LIST_BY_NO_PER_MINUTE),
        }
    }
}

/// A refusal in Lark's `{code, msg}` shape, kept small until it becomes a response.
struct Refusal {
    status: StatusCode,
    code: i64,
    msg: &'static str,
}

impl Refusal {
    const fn new(status: StatusCode, code: i64, msg: &'static str) -> Self {
        Refusal { status, code, msg }
    }

    fn missing() -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: 99991661,
            msg:
                "Missing access token for authorization. Please make a request with token attached.",
        }
    }

    // Lark answers a refused token with a 4xx carrying the generic code; we could not
    // confirm from the docs whether that 4xx is 400 or 401 for these codes, so the
    // simulator uses 401 and the client decides by `code`, never by status.
    fn invalid(code: i64) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            code,
            msg:
                "Invalid access token for authorization. Please make a request with token attached.",
        }
    }

    fn expired() -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: 99991677,
            msg: "Authentication token expired.",
        }
    }

    fn into_response(self) -> Response {
        lark_error(self.status, self.code, self.msg)
    }
}

impl State {
    fn user_by_email(&self, email: &str) -> Option<&SimUser> {
        let email = email.trim();
        self.users.iter().find(|u| {
            u.email.eq_ignore_ascii_case(email)
                || u.enterprise_email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
    }

    fn user_by_open_id(&self, open_id: &str) -> Option<&SimUser> {
        self.users.iter().find(|u| u.open_id == open_id)
    }

    /// The tenant a user access token was issued in.
    fn tenant_of(&self, token: Option<&str>) -> String {
        token
            .and_then(|t| self.access.get(t))
            .and_then(|r| r.tenant_key.clone())
            .unwrap_or_else(|| SIM_TENANT_KEY.to_string())
    }

    /// The user behind a user access token, with the token's scope.
    fn check_user_token(
        &self,
        token: Option<&str>,
        now: Instant,
    ) -> Result<(String, String), Refusal> {
        let token = token.ok_or_else(Refusal::missing)?;
        let record = self
            .access
            .get(token)
            .ok_or_else(|| Refusal::invalid(99991668))?;
        if record.revoked {
            return Err(Refusal::invalid(99991668));
        }
        if record.expired || record.expires_at <= now {
            return Err(Refusal::expired());
        }
        if let Some(&(status, code)) = self.failing_users.get(&record.open_id) {
            return Err(Refusal::new(status, code, USER_FAULT_MSG));
        }
        Ok((record.open_id.clone(), record.scope.clone()))
    }

    fn check_tenant_token(&self, token: Option<&str>, now: Instant) -> Result<(), Refusal> {
        let token = token.ok_or_else(Refusal::missing)?;
        if self.tenant_tokens.is_valid(token, now) {
            Ok(())
        } else {
            Err(Refusal::invalid(99991663))
        }
    }

    /// Whether the app holds a tenant-identity scope. Lark's answer when it does not:
    /// 99991672 "Access denied. One of the following scopes is required: [...]" (the
    /// generic server error codes page, open.feishu.cn/document/server-docs/
    /// getting-started/server-error-codes).
    fn missing_app_scope(&self, scope: &str) -> Option<Response> {
        self.denied_app_scopes.contains(scope).then(|| {
            lark_error(
                StatusCode::BAD_REQUEST,
                99991672,
                &format!("Access denied. One of the following scopes is required: [{scope}]."),
            )
        })
    }

    fn check_app_token(&self, token: Option<&str>, now: Instant) -> Result<(), Refusal> {
        let token = token.ok_or_else(Refusal::missing)?;
        if self.app_tokens.is_valid(token, now) {
            Ok(())
        } else {
            Err(Refusal::invalid(99991664))
        }
    }

    /// Issues an access token (and a refresh token when `offline_access` was granted)
    /// for `open_id`, and remembers them as the user's current tokens.
    fn issue_user_tokens(
        &mut self,
        open_id: &str,
        scope: &str,
        tenant_key: Option<String>,
        from_v1: bool,
        now: Instant,
    ) -> (String, Option<String>) {
        let access = jwt_like("u-", open_id, "access");
        self.access.insert(
            access.clone(),
            UserAccess {
                open_id: open_id.to_string(),
                scope: scope.to_string(),
                tenant_key: tenant_key.clone(),
                expires_at: later(now, self.access_secs),
                expired: false,
                revoked: false,
            },
        );
        let refresh = scope
            .split_whitespace()
            .any(|s| s == "offline_access")
            .then(|| jwt_like("ur-", open_id, "refresh"));
        if let Some(r) = &refresh {
            self.refresh.insert(
                r.clone(),
                UserRefresh {
                    open_id: open_id.to_string(),
                    scope: scope.to_string(),
                    tenant_key,
                    expires_at: later(now, self.refresh_secs),
                    expired: false,
                    revoked: false,
                    used: false,
                    from_v1,
                },
            );
        }
        self.current
            .insert(open_id.to_string(), (access.clone(), refresh.clone()));
        (access, refresh)
    }

    /// Takes a slot under the apply limits, or says how many seconds until one frees
    /// (the `x-ogw-ratelimit-reset` value). Windows are `(now - len, now]`.
    fn take_apply_slot(&mut self, now: Instant) -> Result<(), u64> {
        let minute = Duration::from_secs(60);
        while self.apply_times.front().is_some_and(|&t| t + minute <= now) {
            self.apply_times.pop_front();
        }
        let mut free_at: Option<Instant> = None;
        for (max, window) in [
            (self.apply_per_second as usize, Duration::from_secs(1)),
            (self.apply_per_minute as usize, minute),
        ] {
            if max == 0 {
                continue;
            }
            let in_window = self
                .apply_times
                .iter()
                .rev()
                .take_while(|&&t| t + window > now)
                .count();
            if in_window >= max {
                let at = self.apply_times[self.apply_times.len() - max] + window;
                free_at = Some(free_at.map_or(at, |f| f.max(at)));
            }
        }
        match free_at {
            None => {
                self.apply_times.push_back(now);
                Ok(())
            }
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                Err(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }
}

impl LarkSim {
    /// Starts the simulator on `127.0.0.1:port` (0 = any free port). One base URL serves
    /// both the Open API host and the accounts (authorize) host.
    pub async fn start(port: u16) -> std::io::Result<LarkSim> {
        let (long_connection, stopper) = LongConnection::start();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            long_connection,
        });
        let log = RequestLog::default();
        let faults = Faults::default();
        let router = Router::new()
            .route(
                "/open-apis/auth/v3/tenant_access_token/internal",
                post(oauth::tenant_access_token),
            )
            .route(
                "/open-apis/auth/v3/app_access_token/internal",
                post(oauth::app_access_token),
            )
            .route("/open-apis/authen/v1/authorize", get(oauth::authorize))
            .route("/open-apis/authen/v2/oauth/token", post(oauth::v2_token))
            .route(
                "/open-apis/authen/v1/oidc/access_token",
                post(oauth::v1_access_token),
            )
            .route(
                "/open-apis/authen/v1/oidc/refresh_access_token",
                post(oauth::v1_refresh_access_token),
            )
            .route("/open-apis/authen/v1/user_info", get(oauth::user_info))
            .route("/open-apis/vc/v1/reserves/apply", post(vc::apply))
            .route(
                "/open-apis/vc/v1/reserves/{reserve_id}",
                get(vc::get_reserve)
                    .put(vc::update_reserve)
                    .delete(vc::delete_reserve),
            )
            .route("/open-apis/im/v1/messages", post(im::send_message))
            .route("/open-apis/im/v1/chats", post(im::create_chat))
            .route(
                "/open-apis/im/v1/chats/{chat_id}/members/is_in_chat",
                get(im::is_in_chat),
            )
            .route(
                "/open-apis/calendar/v4/calendars/primary",
                post(calendar::primary),
            )
            .route(
                "/open-apis/calendar/v4/calendars/{calendar_id}/events",
                post(calendar::create_event),
            )
            .route(
                "/open-apis/calendar/v4/calendars/{calendar_id}/events/{event_id}",
                get(calendar::get_event)
                    .patch(calendar::patch_event)
                    .delete(calendar::delete_event),
            )
            .route(
                "/open-apis/calendar/v4/calendars/{calendar_id}/events/{event_id}/attendees",
                post(calendar::add_attendees),
            )
            .route(
                "/open-apis/contact/v3/users/batch_get_id",
                post(contact::batch_get_id),
            )
            .route(
                "/open-apis/vc/v1/meetings/list_by_no",
                get(meetings::rest::list_by_no),
            )
            .route(
                "/open-apis/vc/v1/meetings/{meeting_id}",
                get(meetings::rest::get_meeting),
            )
            .route("/sim/meetings", get(meetings::drive::list))
            .route("/sim/meetings/start", post(meetings::drive::start))
            .route("/sim/meetings/{meeting}/join", post(meetings::drive::join))
            .route(
                "/sim/meetings/{meeting}/leave",
                post(meetings::drive::leave),
            )
            .route("/sim/meetings/{meeting}/end", post(meetings::drive::end))
            .route(
                "/sim/meetings/{meeting}/recording",
                post(meetings::drive::recording),
            )
            .route("/sim/events", get(meetings::drive::events))
            .route(events::ENDPOINT_PATH, post(events::endpoint))
            .route(events::SOCKET_PATH, get(events::websocket))
            .fallback(not_found)
            .with_state(shared.clone());
        let recorder = Recorder {
            log: log.clone(),
            faults: faults.clone(),
        };
        let server = serve(router, recorder, port).await?;
        Ok(LarkSim {
            shared,
            log,
            faults,
            server: Arc::new(server),
            _events: Arc::new(stopper),
        })
    }

    /// `http://127.0.0.1:PORT` — use it as both `lark.base_url` and `lark.accounts_url`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Every request received.
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }

    /// Fault injection (status codes, latency).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The long connection: events raised, acks received, counters and its knobs.
    pub fn long_connection(&self) -> &LongConnection {
        &self.shared.long_connection
    }

    /// Meetings of the reservations: start them, join, leave, end, recordings (each
    /// raising its VC event), and read them.
    pub fn meetings(&self) -> MeetingLife {
        MeetingLife::new(self.shared.clone())
    }

    /// Adds a user (or renames an existing one with this email); returns the open_id.
    pub fn add_user(&self, email: &str, name: &str) -> String {
        self.add_user_with(email, name, None)
    }

    /// As [`LarkSim::add_user`], with an enterprise email as well.
    pub fn add_user_with(&self, email: &str, name: &str, enterprise_email: Option<&str>) -> String {
        let mut state = self.shared.lock();
        if let Some(existing) = state
            .users
            .iter_mut()
            .find(|u| u.email.eq_ignore_ascii_case(email))
        {
            existing.name = name.to_string();
            existing.enterprise_email = enterprise_email.map(str::to_string);
            return existing.open_id.clone();
        }
        let user = SimUser {
            open_id: format!("ou_{}", crate::wire::random_hex(16)),
            union_id: format!("on_{}", crate::wire::random_hex(16)),
            user_id: crate::wire::random_hex(4),
            name: name.to_string(),
            email: email.to_string(),
            enterprise_email: enterprise_email.map(str::to_string),
        };
        let open_id = user.open_id.clone();
        state.users.push(user);
        open_id
    }

    /// Every user, in the order added.
    pub fn users(&self) -> Vec<SimUser> {
        self.shared.lock().users.clone()
    }

    /// Lifetimes of tokens issued from now on (defaults 7200 / 604800 seconds).
    pub fn set_token_lifetimes(&self, access_secs: i64, refresh_secs: i64) {
        let mut state = self.shared.lock();
        state.access_secs = access_secs;
        state.refresh_secs = refresh_secs;
    }

    /// The user's access tokens issued so far now count as expired (99991677).
    pub fn expire_access_tokens(&self, open_id: &str) {
        let mut state = self.shared.lock();
        for t in state.access.values_mut().filter(|t| t.open_id == open_id) {
            t.expired = true;
        }
    }

    /// The user's refresh tokens issued so far now count as expired (20037).
    pub fn expire_refresh_tokens(&self, open_id: &str) {
        let mut state = self.shared.lock();
        for t in state.refresh.values_mut().filter(|t| t.open_id == open_id) {
            t.expired = true;
        }
    }

    /// The user revoked the app: their refresh tokens answer 20064, their access tokens
    /// 99991668. Authorizing again issues fresh, valid tokens.
    pub fn revoke(&self, open_id: &str) {
        let mut state = self.shared.lock();
        for t in state.access.values_mut().filter(|t| t.open_id == open_id) {
            t.revoked = true;
        }
        for t in state.refresh.values_mut().filter(|t| t.open_id == open_id) {
            t.revoked = true;
        }
    }

    /// The (access, refresh) tokens last issued to the user.
    pub fn current_tokens(&self, open_id: &str) -> Option<(String, Option<String>)> {
        self.shared.lock().current.get(open_id).cloned()
    }

    /// Every reservation ever applied for, deleted ones included, in order.
    pub fn reserves(&self) -> Vec<SimReserve> {
        self.shared.lock().reserves.clone()
    }

    /// Deletes a reservation as its owner would in the Lark app (an admin cleaning up
    /// meetings whose answers were lost); false when there is no live one by that id.
    pub fn delete_reserve_by_hand(&self, id: &str) -> bool {
        let mut shared = self.shared.lock();
        match shared
            .reserves
            .iter_mut()
            .find(|r| r.id == id && !r.deleted)
        {
            Some(r) => {
                r.deleted = true;
                true
            }
            None => false,
        }
    }

    /// Every bot message accepted (deduplicated ones once), in order.
    pub fn bot_messages(&self) -> Vec<SimMessage> {
        self.shared.lock().messages.clone()
    }

    /// The user's primary calendar id (every user has one, made on first use).
    pub fn primary_calendar_id(&self, open_id: &str) -> String {
        self.shared.lock().calendars.primary_of(open_id)
    }

    /// Every calendar event ever created, deleted ones included, in order.
    pub fn calendar_events(&self) -> Vec<SimEvent> {
        self.shared.lock().calendars.events()
    }

    /// The user's role on their own calendar drops to reader (`true`) or returns to owner:
    /// while read-only, creating an event answers 191002 and changing one 193002.
    pub fn set_calendar_read_only(&self, open_id: &str, read_only: bool) {
        self.shared
            .lock()
            .calendars
            .set_read_only(open_id, read_only);
    }

    /// Per-app, per-method limits of the calendar and contact endpoints (default 50 per
    /// second, 1000 per minute; 0 = none).
    pub fn set_api_rate_limits(&self, per_second: u32, per_minute: u32) {
        self.shared.lock().api_limits.set(per_second, per_minute);
    }

    /// Withdraws (`granted = false`) or restores an app scope of the tenant identity, e.g.
    /// `vc:reserve` (reserving for someone else with the tenant token) or
    /// `contact:user.id:readonly` (`batch_get_id`). Calls that need it answer 99991672.
    pub fn set_app_scope(&self, scope: &str, granted: bool) {
        let mut state = self.shared.lock();
        if granted {
            state.denied_app_scopes.remove(scope);
        } else {
            state.denied_app_scopes.insert(scope.to_string());
        }
    }

    /// Creates a group chat with the app's bot in it; returns its `oc_…` id.
    pub fn create_chat(&self, name: &str) -> String {
        let chat_id = format!("oc_{}", crate::wire::random_hex(16));
        self.shared.lock().chats.push(SimChat {
            chat_id: chat_id.clone(),
            name: name.to_string(),
            bot_is_member: true,
        });
        chat_id
    }

    /// Removes the bot from a chat: its messages there then answer 230002.
    pub fn remove_bot_from_chat(&self, chat_id: &str) {
        let mut state = self.shared.lock();
        if let Some(chat) = state.chats.iter_mut().find(|c| c.chat_id == chat_id) {
            chat.bot_is_member = false;
        }
    }

    /// Every bot message accepted into this chat, in order.
    pub fn chat_messages(&self, chat_id: &str) -> Vec<SimMessage> {
        self.shared
            .lock()
            .messages
            .iter()
            .filter(|m| m.receive_id_type == "chat_id" && m.receive_id == chat_id)
            .cloned()
            .collect()
    }

    /// Per-app limits on reserve apply (default 50 per second, 1000 per minute; 0 = none).
    pub fn set_rate_limits(&self, per_second: u32, per_minute: u32) {
        let mut state = self.shared.lock();
        state.apply_per_second = per_second;
        state.apply_per_minute = per_minute;
    }

    /// Every call made with this user's token is refused with HTTP `status` and Lark
    /// `code` (e.g. 500 / 121001), until [`LarkSim::heal_user_calls`]: a Lark error for
    /// one trainer while everyone else is served.
    pub fn fail_user_calls(&self, open_id: &str, status: u16, code: i64) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.shared
            .lock()
            .failing_users
            .insert(open_id.to_string(), (status, code));
    }

    /// Ends [`LarkSim::fail_user_calls`] for this user.
    pub fn heal_user_calls(&self, open_id: &str) {
        self.shared.lock().failing_users.remove(open_id);
    }
}

// ---------------------------------------------------------------------------------------
// Wire helpers shared by the handlers.

/// `{code, msg, error: {log_id}}`, Lark's Open API error body.
fn lark_error(status: StatusCode, code: i64, msg: &str) -> Response {
    json_response(
        status,
        json!({ "code": code, "msg": msg, "error": { "log_id": log_id() } }),
    )
}

/// `{code: 0, msg: "success", data}`.
fn lark_ok(data: Value) -> Response {
    json_response(
        StatusCode::OK,
        json!({ "code": 0, "msg": "success", "data": data }),
    )
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

/// `now + n` seconds, or about a century ahead when that overflows: tests set absurd
/// lifetimes (`i64::MAX`) to see what the service does with them, and the simulator
/// still answers with exactly the lifetime it was given.
fn later(now: Instant, n: i64) -> Instant {
    now.checked_add(secs(n))
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(n);
    s.push(char::from(b'1' + rng.gen_range(0..9)));
    for _ in 1..n {
        s.push(char::from(b'0' + rng.gen_range(0..10)));
    }
    s
}

/// Lark-style request id.
fn log_id() -> String {
    format!(
        "{}{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        crate::wire::random_hex(10).to_uppercase()
    )
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A long, JWT-shaped token like Lark's (Lark's own are 1–2 KB), so storage-length
/// problems show up against the simulator.
fn jwt_like(prefix: &str, open_id: &str, kind: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"ES256","kid":"sim-1","typ":"JWT"}"#);
    let payload = b64.encode(
        json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": open_id,
            "app": LARK_APP_ID,
            "typ": kind,
            "iat": unix_now(),
            "ext": crate::wire::random_hex(256),
        })
        .to_string(),
    );
    let mut signature = [0u8; 64];
    rand::thread_rng().fill(&mut signature[..]);
    format!("{prefix}{header}.{payload}.{}", b64.encode(signature))
}

fn check_app_credentials(app_id: Option<&str>, app_secret: Option<&str>) -> Result<(), Refusal> {
    match (app_id, app_secret) {
        (Some(LARK_APP_ID), Some(LARK_APP_SECRET)) => Ok(()),
        (Some(LARK_APP_ID), _) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            10014,
            "app secret invalid",
        )),
        _ => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            10003,
            "invalid param",
        )),
    }
}

#[cfg(test)]
mod tests;
