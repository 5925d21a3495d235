//! CometD (Bayeux) long-polling endpoint of the Salesforce simulator and the event log it
//! serves: Change Data Capture events raised by every record change, gap and overflow
//! events, and platform events.
//!
//! It owns the Bayeux client registry (handshake, subscribe, long-poll connect, cookies,
//! advice), the replay log (monotonic replay ids, retention, `-1`/`-2`/`N` replay), and the
//! fault knobs tests turn (drop every client, forget old events, inject gap events, short
//! timeouts). It must not know anything about bookings or the service: the record store
//! calls [`CometdHub::publish`] after each write, and the hub only formats and delivers.
//!
//! Wire behaviour follows what Salesforce actually sends (sources cited inline):
//! - Bayeux-level errors (`401::`, `403::`, `400::`) come back inside a message with HTTP
//!   200. jsforce's `AuthFailure` extension and emp-connector's `401::Authentication invalid`
//!   listener read them from the message body, which Faye and CometD clients only parse for
//!   a 2xx response. Only a body that is not a JSON array (and a missing/unsupported API
//!   version in the URI) is refused at the HTTP level, with 400.
//! - Missing `BAYEUX_BROWSER` cookie on a message of an existing client →
//!   `400::Client {clientId} has established a session, but no BAYEUX_BROWSER cookie
//!   present` (Streaming API Developer Guide, "Streaming API Error Codes"). A cookie that is
//!   present but belongs to another browser is answered `403::Unknown client` with
//!   `advice.reconnect = handshake`: the server cannot find this client for that browser,
//!   and a re-handshake is what fixes it.
//! - Cookies are set without `Secure`/`SameSite=None` (real Salesforce sets them) because
//!   the simulator speaks plain HTTP on loopback and common third-party cookie jars (Python
//!   `http.cookiejar`, aiohttp) never send a `Secure` cookie over `http://`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use rand::Rng as _;
use serde_json::{json, Map, Value};
use sha2::Digest as _;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a `/meta/connect` is held when nothing is queued (Salesforce: 110 s, "Clients
/// and Timeouts", Streaming API Developer Guide).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(110);
/// A client that sends nothing this long after its last response is dropped (Salesforce:
/// reconnect within 40 s).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(40);
/// How long events stay replayable (72 hours for CDC and high-volume platform events).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(72 * 3600);
/// Name of the cookie that binds a Bayeux client to its browser.
pub const BROWSER_COOKIE: &str = "BAYEUX_BROWSER";
/// Name of Salesforce's streaming load-balancer cookie (seen in the wild as
/// `Set-Cookie: sfdc-stream=!…; path=/; …`, kdcllc/CometD.NetCore.Salesforce issue #43).
pub const LB_COOKIE: &str = "sfdc-stream";
/// The "empty" record id an overflow event carries in `recordIds` (Change Data Capture
/// Developer Guide, "Overflow Events": "always set to 000000000000000AAA").
pub use crate::wire::EMPTY_RECORD_ID;
/// The channel that carries change events of every CDC-enabled object.
pub const ALL_CHANGE_EVENTS_CHANNEL: &str = "/data/ChangeEvents";
/// `changeOrigin` of changes made through the simulator's REST API, unless set otherwise.
pub const DEFAULT_CHANGE_ORIGIN: &str = "com/salesforce/api/rest/62.0";
/// Oldest API version `/cometd/{version}` accepts ("Streaming API Error Codes").
const MIN_API_VERSION: f64 = 37.0;
/// The booking object of the default configuration; CDC is enabled for it from the start so
/// a subscriber can subscribe before the first booking exists.
const DEFAULT_CDC_ENTITY: &str = "Training_Booking__c";
/// Fields a change event body never carries (Change Event Message Structure: no `IsDeleted`,
/// no `SystemModstamp`; the record id travels in the header only).
const FIELDS_NOT_IN_EVENTS: &[&str] = &["Id", "attributes", "IsDeleted", "SystemModstamp"];

/// Kind of a record change, as in `ChangeEventHeader.changeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `CREATE`
    Create,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
    /// `UNDELETE`
    Undelete,
}

impl ChangeKind {
    /// The `changeType` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "CREATE",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
            ChangeKind::Undelete => "UNDELETE",
        }
    }
}

/// One committed record change, published by the record store after every write.
#[derive(Debug, Clone)]
pub struct RecordChange {
    /// Object API name, e.g. `Training_Booking__c`.
    pub entity: String,
    /// What happened to the record.
    pub kind: ChangeKind,
    /// 18-char record id.
    pub record_id: String,
    /// Fields whose value changed (UPDATE), or every non-null field (CREATE).
    pub changed_fields: Vec<String>,
    /// User id of the writer (`commitUser`).
    pub commit_user: String,
    /// New values of the changed fields (CREATE: every non-null field).
    pub values: Map<String, Value>,
}

/// Validates a bearer token; returns the user id it belongs to, or None when invalid.
pub type SessionCheck = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the events of a `/meta/connect` go in the response array. Real servers put them
/// before the connect reply; clients must not rely on that, so tests can move them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventPlacement {
    /// Events, then the replies (what CometD servers do).
    #[default]
    First,
    /// Replies, then the events.
    Last,
    /// Events and replies interleaved at random, each keeping its own order.
    Random,
}

/// One `/meta/subscribe` the hub answered, for tests that check where a client resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRecord {
    /// Bayeux client id.
    pub client_id: String,
    /// The channel asked for.
    pub channel: String,
    /// The replay id asked for (`-1` when the message had no replay extension).
    pub replay_from: i64,
    /// Whether the subscription was accepted.
    pub successful: bool,
}

/// A retained event: delivered on every channel in `channels`.
struct StoredEvent {
    replay_id: i64,
    channels: Vec<String>,
    data: Value,
    published_at: Instant,
}

/// A Bayeux client the hub knows.
struct Client {
    browser: String,
    user_id: String,
    subscriptions: BTreeSet<String>,
    queue: VecDeque<Value>,
    /// Bumped whenever a held connect must look at the client again.
    wake: watch::Sender<()>,
    /// Number of `/meta/connect` requests being held for this client.
    polling: usize,
    /// Identifies the newest connect; an older one still held returns at once.
    connect_epoch: u64,
    /// Time of the last request or response, for the reconnect timeout.
    last_contact: Instant,
    /// Whether a connect reply was already sent (the first one carries the advice).
    connected_once: bool,
}

struct HubState {
    events: VecDeque<StoredEvent>,
    last_replay_id: i64,
    forgotten_before: i64,
    retention: Duration,
    connect_timeout: Duration,
    client_timeout: Duration,
    placement: EventPlacement,
    cdc_entities: BTreeSet<String>,
    platform_channels: BTreeSet<String>,
    clients: HashMap<String, Client>,
    commit_number: i64,
    change_origin: String,
    subscribe_history: Vec<SubscribeRecord>,
}

impl Default for HubState {
    fn default() -> Self {
        HubState {
            events: VecDeque::new(),
            last_replay_id: 0,
            forgotten_before: 0,
            retention: DEFAULT_RETENTION,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            placement: EventPlacement::First,
            cdc_entities: BTreeSet::from([DEFAULT_CDC_ENTITY.to_string()]),
            platform_channels: BTreeSet::new(),
            clients: HashMap::new(),
            // Real commit numbers are large system change numbers (10915705508285 in the
            // emp-connector README recording); start in that range.
            commit_number: 10_915_705_508_285,
            change_origin: DEFAULT_CHANGE_ORIGIN.to_string(),
            subscribe_history: Vec::new(),
        }
    }
}

impl HubState {
    /// Drops events past retention and clients past the reconnect timeout.
    fn housekeep(&mut self, now: Instant) {
        let retention = self.retention;
        let forgotten_before = self.forgotten_before;
        while let Some(front) = self.events.front() {
            let expired = now.saturating_duration_since(front.published_at) > retention;
            if front.replay_id < forgotten_before || expired {
                self.events.pop_front();
            } else {
                break;
            }
        }
        let client_timeout = self.client_timeout;
        self.clients.retain(|_, c| {
            c.polling > 0 || now.saturating_duration_since(c.last_contact) <= client_timeout
        });
    }

    /// Whether `replay_from` names a position the log can resume from.
    fn replay_valid(&self, replay_from: i64) -> bool {
        match replay_from {
            -1 | -2 => true,
            n if n < 0 => false,
            // The event itself must still be retained (and must have been issued).
            n => self.events.front().is_some_and(|e| e.replay_id <= n) && n <= self.last_replay_id,
        }
    }

    fn channel_exists(&self, channel: &str) -> bool {
        channel == ALL_CHANGE_EVENTS_CHANNEL
            || self.platform_channels.contains(channel)
            || self.cdc_entities.iter().any(|e| cdc_channel(e) == channel)
    }

    /// Appends an event to the log and queues it for every subscribed client.
    fn append(&mut self, channels: Vec<String>, data_for: impl FnOnce(i64) -> Value) -> i64 {
        let now = Instant::now();
        self.housekeep(now);
        self.last_replay_id += 1;
        let replay_id = self.last_replay_id;
        let data = data_for(replay_id);
        for client in self.clients.values_mut() {
            let mut queued = false;
            for channel in &channels {
                if client.subscriptions.contains(channel) {
                    client
                        .queue
                        .push_back(json!({"channel": channel, "data": data.clone()}));
                    queued = true;
                }
            }
            if queued {
                client.wake.send_replace(());
            }
        }
        self.events.push_back(StoredEvent {
            replay_id,
            channels,
            data,
            published_at: now,
        });
        replay_id
    }

    fn next_commit_number(&mut self) -> i64 {
        self.commit_number += rand::thread_rng().gen_range(1..1000);
        self.commit_number
    }
}

/// The event log and Bayeux client registry.
pub struct CometdHub {
    state: Mutex<HubState>,
}

impl Default for CometdHub {
    fn default() -> Self {
        CometdHub {
            state: Mutex::new(HubState::default()),
        }
    }
}

impl std::fmt::Debug for CometdHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("CometdHub")
            .field("last_replay_id", &st.last_replay_id)
            .field("retained_events", &st.events.len())
            .field("clients", &st.clients.len())
            .finish()
    }
}

/// `Foo__c` → `/data/Foo__ChangeEvent`, `Account` → `/data/AccountChangeEvent`.
pub fn cdc_channel(entity: &str) -> String {
    match entity.strip_suffix("__c") {
        Some(base) => format!("/data/{base}__ChangeEvent"),
        None => format!("/data/{entity}ChangeEvent"),
    }
}

impl CometdHub {
    /// A hub with CDC enabled for `Training_Booking__c` and the Salesforce timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic elsewhere must not take the whole simulator down with poisoned locks.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change and delivers it to subscribers of `/data/{Entity}ChangeEvent`
    /// (entity `Foo__c` → channel `/data/Foo__ChangeEvent`) and of `/data/ChangeEvents`.
    /// Publishing enables CDC for the entity (the simulator tracks every object it stores).
    pub fn publish(&self, change: RecordChange) {
        let mut st = self.lock();
        st.cdc_entities.insert(change.entity.clone());
        let commit_number = st.next_commit_number();
        let origin = st.change_origin.clone();
        let channels = vec![
            cdc_channel(&change.entity),
            ALL_CHANGE_EVENTS_CHANNEL.to_string(),
        ];
        st.append(channels, |replay_id| {
            change_event_data(&change, &origin, commit_number, replay_id)
        });
    }

    /// Publishes a gap event (`GAP_CREATE`, `GAP_UPDATE`, `GAP_DELETE`, `GAP_UNDELETE`) or an
    /// overflow event (`GAP_OVERFLOW`, whose `recordIds` is always the empty record id, so
    /// `record_ids` is ignored). Gap events carry header fields only ("Gap Events", Change Data
    /// Capture Developer Guide). Returns the replay id. Panics on any other `change_type`:
    /// it is a test knob and a typo must fail loudly.
    pub fn inject_gap(&self, entity: &str, change_type: &str, record_ids: &[&str]) -> i64 {
        let ids: Vec<String> = match change_type {
            "GAP_CREATE" | "GAP_UPDATE" | "GAP_DELETE" | "GAP_UNDELETE" => {
                record_ids.iter().map(|s| s.to_string()).collect()
            }
            "GAP_OVERFLOW" => vec![EMPTY_RECORD_ID.to_string()],
            other => panic!("inject_gap: {other:?} is not a gap change type"),
        };
        let mut st = self.lock();
        st.cdc_entities.insert(entity.to_string());
        let commit_number = st.next_commit_number();
        let channels = vec![cdc_channel(entity), ALL_CHANGE_EVENTS_CHANNEL.to_string()];
        st.append(channels, |replay_id| {
            let header = json!({
                "entityName": entity,
                "recordIds": ids,
                "changeType": change_type,
                // Gap events come from work done outside an API transaction.
                "changeOrigin": "",
                "transactionKey": transaction_key(),
                "sequenceNumber": 1,
                "commitTimestamp": now_millis(),
                "commitNumber": commit_number,
                "commitUser": crate::SF_HUMAN_USER_ID,
                "nulledFields": [],
                "diffFields": [],
                "changedFields": [],
            });
            json!({
                "schema": schema_id(entity),
                "payload": {"ChangeEventHeader": header},
                "event": {"replayId": replay_id},
            })
        })
    }

    /// Makes `/event/{Name}__e` subscribable.
    pub fn register_platform_event(&self, channel: &str) {
        self.lock().platform_channels.insert(channel.to_string());
    }

    /// Publishes a platform event on a registered (or, implicitly, newly registered)
    /// `/event/X__e` channel. `payload` holds the event's custom fields; `CreatedDate` and
    /// `CreatedById` are added like Salesforce does. Returns the replay id.
    pub fn publish_platform_event(&self, channel: &str, payload: Value) -> i64 {
        let mut st = self.lock();
        st.platform_channels.insert(channel.to_string());
        let schema = schema_id(channel);
        st.append(vec![channel.to_string()], |replay_id| {
            let mut body = Map::new();
            body.insert("CreatedDate".into(), json!(iso_now()));
            body.insert("CreatedById".into(), json!(crate::SF_HUMAN_USER_ID));
            if let Value::Object(fields) = payload {
                body.extend(fields);
            }
            json!({
                "schema": schema,
                "payload": body,
                "event": {"EventUuid": uuid::Uuid::new_v4().to_string(), "replayId": replay_id},
            })
        })
    }

    /// Fault knob: delivers `{"channel": channel, "data": data}` verbatim on `channel` (a
    /// malformed event, say). The log entry gets the next replay id for ordering, but `data`
    /// is not touched, so it carries whatever replay id (or none) the test put in it.
    pub fn publish_raw(&self, channel: &str, data: Value) -> i64 {
        self.lock().append(vec![channel.to_string()], |_| data)
    }

    /// Enables CDC for an object, so its channel exists before its first change.
    pub fn enable_cdc(&self, entity: &str) {
        self.lock().cdc_entities.insert(entity.to_string());
    }

    /// Sets the `changeOrigin` header of record changes (default
    /// [`DEFAULT_CHANGE_ORIGIN`]).
    pub fn set_change_origin(&self, origin: &str) {
        self.lock().change_origin = origin.to_string();
    }

    /// Every retained event, oldest first, as `{"channel", "data"}` on its first channel.
    pub fn events(&self) -> Vec<Value> {
        let mut st = self.lock();
        st.housekeep(Instant::now());
        st.events
            .iter()
            .map(|e| json!({"channel": e.channels[0], "data": e.data}))
            .collect()
    }

    /// The newest replay id issued (0 before the first event).
    pub fn last_replay_id(&self) -> i64 {
        self.lock().last_replay_id
    }

    /// Forgets every event whose replay id is below `replay_id`, so subscribing from one of
    /// them fails with the "replayId … was invalid" error.
    pub fn forget_events_before(&self, replay_id: i64) {
        let mut st = self.lock();
        st.forgotten_before = st.forgotten_before.max(replay_id);
        st.housekeep(Instant::now());
    }

    /// How long events stay replayable (default 72 h).
    pub fn set_retention(&self, retention: Duration) {
        let mut st = self.lock();
        st.retention = retention;
        st.housekeep(Instant::now());
    }

    /// Forgets every client: its next message gets `403::Unknown client` with
    /// `advice.reconnect = handshake`; held connects return that at once.
    pub fn drop_clients(&self) {
        let mut st = self.lock();
        for (_, client) in st.clients.drain() {
            client.wake.send_replace(());
        }
    }

    /// How long a connect is held when nothing is queued (default 110 s).
    pub fn set_connect_timeout(&self, timeout: Duration) {
        self.lock().connect_timeout = timeout;
    }

    /// How long a client may stay silent after a response before it is dropped (default
    /// 40 s).
    pub fn set_client_timeout(&self, timeout: Duration) {
        self.lock().client_timeout = timeout;
    }

    /// Where events go in a connect response (default [`EventPlacement::First`]).
    pub fn set_event_placement(&self, placement: EventPlacement) {
        self.lock().placement = placement;
    }

    /// Makes every held connect re-check its bearer token now. Call after invalidating
    /// sessions: Salesforce "regularly validates the OAuth token while the client is
    /// connected" and answers `401::Authentication invalid` on `/meta/connect`.
    pub fn revalidate_sessions(&self) {
        for client in self.lock().clients.values() {
            client.wake.send_replace(());
        }
    }

    /// Number of Bayeux clients currently known.
    pub fn client_count(&self) -> usize {
        let mut st = self.lock();
        st.housekeep(Instant::now());
        st.clients.len()
    }

    /// Every `/meta/subscribe` answered so far, oldest first.
    pub fn subscribe_history(&self) -> Vec<SubscribeRecord> {
        self.lock().subscribe_history.clone()
    }

    /// Axum routes for `POST /cometd/{version}`; `check` validates bearer tokens.
    pub fn router(self: &Arc<Self>, check: SessionCheck) -> axum::Router {
        let ctx = HubContext {
            hub: Arc::clone(self),
            check,
        };
        axum::Router::new()
            .route("/cometd", post(version_missing))
            .route("/cometd/", post(version_missing))
            .route("/cometd/{version}", post(handle_bayeux))
            .with_state(ctx)
    }
}

#[derive(Clone)]
struct HubContext {
    hub: Arc<CometdHub>,
    check: SessionCheck,
}

/// What the request's credentials turned out to be.
#[derive(Clone)]
enum Auth {
    Valid { token: String, user_id: String },
    Missing,
    Invalid,
}

impl Auth {
    /// The Bayeux error text for a failed authentication ("Streaming API Error Codes").
    fn failure(&self) -> Option<&'static str> {
        match self {
            Auth::Valid { .. } => None,
            Auth::Missing => Some("401::Request requires authentication"),
            Auth::Invalid => Some("401::Authentication invalid"),
        }
    }
}

/// What one request carried besides its messages.
struct RequestContext {
    auth: Auth,
    browser_cookie: Option<String>,
    has_lb_cookie: bool,
    /// Cookies to set on the response (only ever on a handshake).
    set_cookies: Vec<String>,
}

async fn version_missing() -> Response {
    // "API version in the URI is mandatory" (Streaming API Error Codes).
    plain_error(
        StatusCode::BAD_REQUEST,
        "400::API version in the URI is mandatory. URI format: '/cometd/62.0'",
    )
}

fn plain_error(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        json!([{"error": message, "successful": false}]).to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}

async fn handle_bayeux(
    State(ctx): State<HubContext>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match version.parse::<f64>() {
        Ok(v) if v >= MIN_API_VERSION && version.contains('.') => {}
        _ => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "400::Unsupported API version. Only API versions '37.0' and later are supported. URI format: '/cometd/62.0'",
            )
        }
    }
    // Salesforce only takes an array of messages (design §4); a lone object is refused.
    let messages = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(messages)) => messages,
        Ok(_) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "400::Bayeux messages must be sent as a JSON array",
            )
        }
        Err(_) => return plain_error(StatusCode::BAD_REQUEST, "400::Request body is not JSON"),
    };

    let auth = match bearer_token(&headers) {
        None => Auth::Missing,
        Some(token) => match (ctx.check)(&token) {
            Some(user_id) => Auth::Valid { token, user_id },
            None => Auth::Invalid,
        },
    };
    let cookies = request_cookies(&headers);
    let mut rc = RequestContext {
        auth,
        browser_cookie: cookies.get(BROWSER_COOKIE).cloned(),
        has_lb_cookie: cookies.contains_key(LB_COOKIE),
        set_cookies: Vec::new(),
    };

    let mut replies = Vec::with_capacity(messages.len());
    let mut events = Vec::new();
    for message in &messages {
        let channel = message.get("channel").and_then(Value::as_str).unwrap_or("");
        let reply = match channel {
            "/meta/handshake" => ctx.hub.handshake(message, &mut rc),
            "/meta/subscribe" => ctx.hub.subscribe(message, &rc),
            "/meta/unsubscribe" => ctx.hub.unsubscribe(message, &rc),
            "/meta/disconnect" => ctx.hub.disconnect(message, &rc),
            "/meta/connect" => {
                let (reply, delivered) = ctx.hub.connect(message, &rc, &ctx.check).await;
                events.extend(delivered);
                reply
            }
            // Salesforce subscribers cannot publish through CometD.
            other => reply_to(message, other).error("403::Restricted channel"),
        };
        replies.push(reply);
    }

    let placement = ctx.hub.lock().placement;
    let body = Value::Array(arrange(events, replies, placement));
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    for cookie in rc.set_cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Salesforce accepts both `Bearer` and the older `OAuth` scheme.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("OAuth "))?
        .trim();
    (!token.is_empty()).then(|| token.to_string())
}

fn request_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Puts the connect's events and the replies into one array, per `placement`.
fn arrange(events: Vec<Value>, replies: Vec<Value>, placement: EventPlacement) -> Vec<Value> {
    match placement {
        EventPlacement::First => events.into_iter().chain(replies).collect(),
        EventPlacement::Last => replies.into_iter().chain(events).collect(),
        EventPlacement::Random => {
            let mut rng = rand::thread_rng();
            let mut out = Vec::with_capacity(events.len() + replies.len());
            let (mut e, mut r) = (
                events.into_iter().peekable(),
                replies.into_iter().peekable(),
            );
            while e.peek().is_some() || r.peek().is_some() {
                let take_event = match (e.peek(), r.peek()) {
                    (Some(_), Some(_)) => rng.gen_bool(0.5),
                    (Some(_), None) => true,
                    _ => false,
                };
                out.extend(if take_event { e.next() } else { r.next() });
            }
            out
        }
    }
}

/// Builds the reply to one message: same channel and id, plus what the handler adds.
struct Reply(Map<String, Value>);

fn reply_to(message: &Value, channel: &str) -> Reply {
    let mut map = Map::new();
    if let Some(client_id) = message.get("clientId") {
        map.insert("clientId".into(), client_id.clone());
    }
    map.insert("channel".into(), json!(channel));
    if let Some(id) = message.get("id") {
        map.insert("id".into(), id.clone());
    }
    Reply(map)
}

impl Reply {
    fn with(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_string(), value);
        self
    }

    fn ok(self) -> Value {
        Value::Object(self.with("successful", json!(true)).0)
    }

    fn error(self, error: &str) -> Value {
        Value::Object(
            self.with("error", json!(error))
                .with("successful", json!(false))
                .0,
        )
    }

    /// `403::Unknown client`, as recorded from Salesforce:
    /// `{"advice":{"interval":0,"reconnect":"handshake"},"channel":"/meta/connect","id":"304",
    /// "error":"403::Unknown client","successful":false}` (kdcllc/CometD.NetCore.Salesforce
    /// issue #43). The recording has no clientId.
    fn unknown_client(mut self) -> Value {
        self.0.remove("clientId");
        self.with("advice", json!({"interval": 0, "reconnect": "handshake"}))
            .error("403::Unknown client")
    }

    /// An authentication failure on a non-handshake channel ("Handling Streaming API
    /// Errors": `401::Authentication invalid` with `advice: {reconnect: none, interval: 0}`).
    fn auth_failed(self, error: &str) -> Value {
        self.with("advice", json!({"reconnect": "none", "interval": 0}))
            .error(error)
    }
}

/// Why a message from an existing client cannot be served.
enum ClientProblem {
    Unknown,
    NoCookie(String),
}

impl HubState {
    /// Finds the message's client and checks its browser cookie.
    fn client_for(
        &mut self,
        message: &Value,
        rc: &RequestContext,
    ) -> Result<(String, &mut Client), ClientProblem> {
        self.housekeep(Instant::now());
        let client_id = message
            .get("clientId")
            .and_then(Value::as_str)
            .ok_or(ClientProblem::Unknown)?;
        let client = self
            .clients
            .get_mut(client_id)
            .ok_or(ClientProblem::Unknown)?;
        match &rc.browser_cookie {
            None => Err(ClientProblem::NoCookie(client_id.to_string())),
            Some(b) if *b != client.browser => Err(ClientProblem::Unknown),
            Some(_) => Ok((client_id.to_string(), client)),
        }
    }
}

fn problem_reply(reply: Reply, problem: ClientProblem) -> Value {
    match problem {
        ClientProblem::Unknown => reply.unknown_client(),
        ClientProblem::NoCookie(client_id) => reply.error(&format!(
            "400::Client {client_id} has established a session, but no {BROWSER_COOKIE} cookie present"
        )),
    }
}

impl CometdHub {
    fn handshake(&self, message: &Value, rc: &mut RequestContext) -> Value {
        let reply = reply_to(message, "/meta/handshake");
        let user_id = match &rc.auth {
            Auth::Valid { user_id, .. } => user_id.clone(),
            other => {
                // "Handling Streaming API Errors": the handshake fails with
                // 403::Handshake denied, the 401 reason nested in ext.sfdc.failureReason.
                let reason = other.failure().unwrap_or("401::Authentication invalid");
                return reply
                    .with(
                        "ext",
                        json!({"sfdc": {"failureReason": reason}, "replay": true}),
                    )
                    .with("advice", json!({"reconnect": "none"}))
                    .error("403::Handshake denied");
            }
        };
        let types: Vec<&str> = message
            .get("supportedConnectionTypes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !types.contains(&"long-polling") {
            // Only long-polling is supported ("Invalid connection type {connection_type}").
            return reply.error(&format!("400::Invalid connection type {}", types.join(",")));
        }

        let browser = match &rc.browser_cookie {
            Some(b) => b.clone(),
            None => {
                let b = random_id(26);
                rc.set_cookies
                    .push(format!("{BROWSER_COOKIE}={b}; Path=/; HttpOnly"));
                rc.browser_cookie = Some(b.clone());
                b
            }
        };
        if !rc.has_lb_cookie {
            let expires = (chrono::Utc::now() + chrono::Duration::hours(1))
                .format("%a, %d-%b-%Y %H:%M:%S GMT");
            rc.set_cookies.push(format!(
                "{LB_COOKIE}=!{}; path=/; Expires={expires}",
                random_id(40)
            ));
            rc.has_lb_cookie = true;
        }
        let client_id = random_id(27);
        let (wake, _) = watch::channel(());
        let mut st = self.lock();
        st.housekeep(Instant::now());
        st.clients.insert(
            client_id.clone(),
            Client {
                browser,
                user_id,
                subscriptions: BTreeSet::new(),
                queue: VecDeque::new(),
                wake,
                polling: 0,
                connect_epoch: 0,
                last_contact: Instant::now(),
                connected_once: false,
            },
        );
        // Recorded successful handshake (kdcllc/CometD.NetCore.Salesforce issue #43):
        // {"ext":{"replay":true,"payload.format":true},"minimumVersion":"1.0","clientId":…,
        //  "supportedConnectionTypes":["long-polling"],"channel":"/meta/handshake","id":…,
        //  "version":"1.0","successful":true} — no advice; the first connect carries it.
        reply
            .with("ext", json!({"replay": true, "payload.format": true}))
            .with("minimumVersion", json!("1.0"))
            .with("clientId", json!(client_id))
            .with("supportedConnectionTypes", json!(["long-polling"]))
            .with("version", json!("1.0"))
            .ok()
    }

    fn subscribe(&self, message: &Value, rc: &RequestContext) -> Value {
        let mut reply = reply_to(message, "/meta/subscribe");
        if let Some(sub) = message.get("subscription") {
            reply = reply.with("subscription", sub.clone());
        }
        let mut st = self.lock();
        if let Some(error) = rc.auth.failure() {
            drop_client_of(&mut st, message);
            return reply.auth_failed(error);
        }
        let (client_id, client) = match st.client_for(message, rc) {
            Ok(found) => found,
            Err(problem) => return problem_reply(reply, problem),
        };
        if let Some(error) = user_mismatch(client, &rc.auth) {
            return reply.error(error);
        }
        client.last_contact = Instant::now();
        let channel = match message.get("subscription").and_then(Value::as_str) {
            None | Some("") => return reply.error("400::Channel name not specified"),
            Some(c) if !c.starts_with('/') => {
                return reply.error("400::Channel subscriptions must start with a leading '/'")
            }
            Some(c) => c.to_string(),
        };
        // The replay map is keyed by the exact channel; no entry means "new events only".
        let replay_from = message
            .pointer("/ext/replay")
            .and_then(Value::as_object)
            .and_then(|m| m.get(&channel))
            .and_then(Value::as_i64)
            .unwrap_or(-1);

        let outcome = if !st.channel_exists(&channel) {
            Err(format!(
                "400::The channel you requested to subscribe to does not exist {channel}"
            ))
        } else if !st.replay_valid(replay_from) {
            // Exact text, two spaces after "invalid." (design §4).
            Err(format!(
                "400::The replayId {replay_from} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events."
            ))
        } else {
            Ok(())
        };
        st.subscribe_history.push(SubscribeRecord {
            client_id: client_id.clone(),
            channel: channel.clone(),
            replay_from,
            successful: outcome.is_ok(),
        });
        if let Err(error) = outcome {
            return reply.error(&error);
        }

        let replayed: Vec<Value> = if replay_from == -1 {
            Vec::new()
        } else {
            st.events
                .iter()
                .filter(|e| e.replay_id > replay_from && e.channels.contains(&channel))
                .map(|e| json!({"channel": channel, "data": e.data}))
                .collect()
        };
        let Some(client) = st.clients.get_mut(&client_id) else {
            return reply.unknown_client();
        };
        client.subscriptions.insert(channel);
        if !replayed.is_empty() {
            client.queue.extend(replayed);
            client.wake.send_replace(());
        }
        reply.ok()
    }

    fn unsubscribe(&self, message: &Value, rc: &RequestContext) -> Value {
        let mut reply = reply_to(message, "/meta/unsubscribe");
        if let Some(sub) = message.get("subscription") {
            reply = reply.with("subscription", sub.clone());
        }
        let mut st = self.lock();
        if let Some(error) = rc.auth.failure() {
            drop_client_of(&mut st, message);
            return reply.auth_failed(error);
        }
        match st.client_for(message, rc) {
            Ok((_, client)) => {
                client.last_contact = Instant::now();
                if let Some(channel) = message.get("subscription").and_then(Value::as_str) {
                    client.subscriptions.remove(channel);
                }
                reply.ok()
            }
            Err(problem) => problem_reply(reply, problem),
        }
    }

    fn disconnect(&self, message: &Value, rc: &RequestContext) -> Value {
        let reply = reply_to(message, "/meta/disconnect");
        let mut st = self.lock();
        if let Some(error) = rc.auth.failure() {
            drop_client_of(&mut st, message);
            return reply.auth_failed(error);
        }
        match st.client_for(message, rc) {
            Ok((client_id, _)) => {
                if let Some(client) = st.clients.remove(&client_id) {
                    client.wake.send_replace(());
                }
                reply.ok()
            }
            Err(problem) => problem_reply(reply, problem),
        }
    }

    /// The long poll: answers at once when events are queued (or the client asked for
    /// `advice.timeout: 0`), else when one arrives, the client is dropped, a newer connect
    /// supersedes this one, or the connect timeout passes.
    async fn connect(
        &self,
        message: &Value,
        rc: &RequestContext,
        check: &SessionCheck,
    ) -> (Value, Vec<Value>) {
        let reply = reply_to(message, "/meta/connect");
        let (client_id, epoch, mut wake, deadline) = {
            let mut st = self.lock();
            if let Some(error) = rc.auth.failure() {
                drop_client_of(&mut st, message);
                return (reply.auth_failed(error), Vec::new());
            }
            let connect_timeout = st.connect_timeout;
            let (client_id, client) = match st.client_for(message, rc) {
                Ok(found) => found,
                Err(problem) => return (problem_reply(reply, problem), Vec::new()),
            };
            if let Some(error) = user_mismatch(client, &rc.auth) {
                return (reply.error(error), Vec::new());
            }
            let connection_type = message.get("connectionType").and_then(Value::as_str);
            if connection_type.is_some_and(|t| t != "long-polling") {
                let t = connection_type.unwrap_or_default();
                return (
                    reply.error(&format!("400::Invalid connection type {t}")),
                    Vec::new(),
                );
            }
            client.last_contact = Instant::now();
            client.connect_epoch += 1;
            // Release any older connect still held for this client.
            client.wake.send_replace(());
            let wake = client.wake.subscribe();
            // The first connect of a session is answered at once, `advice.timeout: 0` or
            // not: CometD's server (which the Streaming API runs on) only suspends a
            // connect `if (timeout > 0 && wasConnected && session.isConnected())` —
            // "Support old clients that do not send advice:{timeout:0} on the first
            // connect" (cometd/cometd, AbstractHttpTransport.processMetaConnect). Clients
            // such as aiocometd wait for that first reply before `open()` returns.
            let immediate = !client.connected_once
                || message.pointer("/advice/timeout").and_then(Value::as_i64) == Some(0);
            if immediate || !client.queue.is_empty() {
                let delivered = client.queue.drain(..).collect();
                let reply = connect_reply(reply, client, connect_timeout);
                return (reply, delivered);
            }
            client.polling += 1;
            (
                client_id,
                client.connect_epoch,
                wake,
                Instant::now() + connect_timeout,
            )
        };

        // Counts the poll down even when the HTTP request is dropped mid-wait.
        let _poll = PollGuard {
            hub: self,
            client_id: &client_id,
        };
        loop {
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        // The client (and its sender) is gone.
                        return (reply.unknown_client(), Vec::new());
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
            // Checked before taking the hub lock: the check may take the simulator's own
            // session lock, and the two must never nest.
            let still_valid = match &rc.auth {
                Auth::Valid { token, .. } => check(token).is_some(),
                _ => true,
            };
            let mut st = self.lock();
            let connect_timeout = st.connect_timeout;
            let Some(client) = st.clients.get_mut(&client_id) else {
                return (reply.unknown_client(), Vec::new());
            };
            if client.connect_epoch != epoch {
                return (reply.ok(), Vec::new());
            }
            if !still_valid {
                st.clients.remove(&client_id);
                return (reply.auth_failed("401::Authentication invalid"), Vec::new());
            }
            if !client.queue.is_empty() || Instant::now() >= deadline {
                let delivered = client.queue.drain(..).collect();
                return (connect_reply(reply, client, connect_timeout), delivered);
            }
        }
    }
}

/// The first connect reply after a handshake carries the advice, later ones do not
/// (recorded: `{"clientId":…,"advice":{"interval":0,"timeout":110000,"reconnect":"retry"},
/// "channel":"/meta/connect",…}`, then `{"clientId":…,"channel":"/meta/connect","id":"86",
/// "successful":true}`, Oyatel/CometD.NET issue #23).
fn connect_reply(reply: Reply, client: &mut Client, connect_timeout: Duration) -> Value {
    client.last_contact = Instant::now();
    let first = !client.connected_once;
    client.connected_once = true;
    if first {
        reply
            .with(
                "advice",
                json!({"interval": 0, "timeout": connect_timeout.as_millis() as u64, "reconnect": "retry"}),
            )
            .ok()
    } else {
        reply.ok()
    }
}

/// "Authenticated user id does not match the session's user id" (Streaming API Error Codes).
fn user_mismatch(client: &Client, auth: &Auth) -> Option<&'static str> {
    match auth {
        Auth::Valid { user_id, .. } if *user_id != client.user_id => {
            Some("400::Authenticated user id does not match the session's user id")
        }
        _ => None,
    }
}

/// An unauthenticated message ends its client: after a 401 it must log in and handshake
/// again.
fn drop_client_of(st: &mut HubState, message: &Value) {
    if let Some(id) = message.get("clientId").and_then(Value::as_str) {
        if let Some(client) = st.clients.remove(id) {
            client.wake.send_replace(());
        }
    }
}

struct PollGuard<'a> {
    hub: &'a CometdHub,
    client_id: &'a str,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if let Some(client) = st.clients.get_mut(self.client_id) {
            client.polling = client.polling.saturating_sub(1);
            client.last_contact = Instant::now();
        }
    }
}

/// The `data` of a CDC event, shaped like the recordings in the emp-connector README
/// (forcedotcom/EMP-Connector, "Console Example"): CREATE/UNDELETE carry every non-null
/// field plus system fields and `changedFields: []`; UPDATE carries only the changed
/// fields, with `LastModifiedDate` added to `changedFields`; DELETE carries the header
/// only. `nulledFields`/`diffFields` follow the newer API versions' header.
fn change_event_data(
    change: &RecordChange,
    change_origin: &str,
    commit_number: i64,
    replay_id: i64,
) -> Value {
    let now = iso_now();
    let mut body = Map::new();
    let mut changed_fields: Vec<String> = Vec::new();
    let mut nulled_fields: Vec<String> = Vec::new();
    let keep = |name: &str| !FIELDS_NOT_IN_EVENTS.contains(&name);
    match change.kind {
        ChangeKind::Create | ChangeKind::Undelete => {
            for (name, value) in &change.values {
                if keep(name) && !value.is_null() {
                    body.insert(name.clone(), value.clone());
                }
            }
            for (name, default) in [
                ("CreatedDate", json!(now)),
                ("LastModifiedDate", json!(now)),
                ("CreatedById", json!(change.commit_user)),
                ("LastModifiedById", json!(change.commit_user)),
            ] {
                body.entry(name).or_insert(default);
            }
        }
        ChangeKind::Update => {
            for name in change.changed_fields.iter().filter(|n| keep(n)) {
                let value = change.values.get(name).cloned().unwrap_or(Value::Null);
                if value.is_null() {
                    nulled_fields.push(name.clone());
                }
                body.insert(name.clone(), value);
                changed_fields.push(name.clone());
            }
            if !changed_fields.iter().any(|f| f == "LastModifiedDate") {
                changed_fields.push("LastModifiedDate".into());
            }
            let modified = change
                .values
                .get("LastModifiedDate")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| json!(now));
            body.insert("LastModifiedDate".into(), modified);
        }
        ChangeKind::Delete => {}
    }
    let header = json!({
        "entityName": change.entity,
        "recordIds": [change.record_id],
        "changeType": change.kind.as_str(),
        "changeOrigin": change_origin,
        "transactionKey": transaction_key(),
        "sequenceNumber": 1,
        "commitTimestamp": now_millis(),
        "commitNumber": commit_number,
        "commitUser": change.commit_user,
        "nulledFields": nulled_fields,
        "diffFields": [],
        "changedFields": changed_fields,
    });
    body.insert("ChangeEventHeader".into(), header);
    json!({
        "schema": schema_id(&change.entity),
        "payload": body,
        "event": {"replayId": replay_id},
    })
}

/// A stable 22-character schema id per event type, like `-pszPCNGMHqUPU1ftkjxEA`.
fn schema_id(event_type: &str) -> String {
    let digest = sha2::Sha256::digest(event_type.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Shaped like `00039547-b906-1e54-d709-ebbf7a6f2777`.
fn transaction_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// CDC JSON renders DateTime fields as `2020-08-06T06:22:19.000Z`.
fn iso_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Lower-case base-36 ids like the recorded client id `1cyu4thyxh3fgv1nqwcvebt3o9x`.
fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{serve, Faults, Recorder, RequestLog, RunningServer};
    use crate::{SF_HUMAN_USER_ID, SF_INTEGRATION_USER_ID};

    const TOKEN: &str = "00Dsim!valid-token";
    const BOOKING_CHANNEL: &str = "/data/Training_Booking__ChangeEvent";
    const BOOKING_ID: &str = "a0B5g00000Kx1AbEAJ";

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../../fixtures/cdc/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect()
    }

    fn accept_one_token() -> SessionCheck {
        Arc::new(|t: &str| (t == TOKEN).then(|| SF_INTEGRATION_USER_ID.to_string()))
    }

    async fn start(hub: &Arc<CometdHub>) -> RunningServer {
        let recorder = Recorder {
            log: RequestLog::default(),
            faults: Faults::default(),
        };
        serve(hub.router(accept_one_token()), recorder, 0)
            .await
            .expect("serve")
    }

    /// A bare Bayeux client that manages cookies by hand, so tests can leave them out.
    struct Raw {
        http: reqwest::Client,
        url: String,
        token: Option<&'static str>,
        cookies: Vec<String>,
        client_id: String,
    }

    impl Raw {
        fn new(server: &RunningServer) -> Raw {
            Raw {
                http: reqwest::Client::new(),
                url: format!("{}/cometd/62.0", server.base_url()),
                token: Some(TOKEN),
                cookies: Vec::new(),
                client_id: String::new(),
            }
        }

        async fn send(&mut self, body: Value) -> (u16, Value) {
            let mut request = self.http.post(&self.url).json(&body);
            if let Some(token) = self.token {
                request = request.bearer_auth(token);
            }
            if !self.cookies.is_empty() {
                request = request.header("Cookie", self.cookies.join("; "));
            }
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            for set in response.headers().get_all("set-cookie") {
                let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
                self.cookies.push(pair);
            }
            let text = response.text().await.expect("body");
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }

        async fn handshake(&mut self) -> Value {
            let (status, body) = self
                .send(json!([{"channel": "/meta/handshake", "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"], "ext": {"replay": true}, "id": "1"}]))
                .await;
            assert_eq!(status, 200);
            let reply = body[0].clone();
            self.client_id = reply["clientId"].as_str().unwrap_or_default().to_string();
            reply
        }

        async fn subscribe(&mut self, channel: &str, replay_from: Option<i64>) -> Value {
            let mut message = json!({"channel": "/meta/subscribe", "clientId": self.client_id,
                "subscription": channel, "id": "2"});
            if let Some(from) = replay_from {
                message["ext"] = json!({"replay": {channel: from}});
            }
            let (status, body) = self.send(json!([message])).await;
            assert_eq!(status, 200);
            body[0].clone()
        }

        async fn connect(&mut self, immediate: bool) -> Vec<Value> {
            let mut message = json!({"channel": "/meta/connect", "clientId": self.client_id,
                "connectionType": "long-polling", "id": "3"});
            if immediate {
                message["advice"] = json!({"timeout": 0});
            }
            let (status, body) = self.send(json!([message])).await;
            assert_eq!(status, 200);
            body.as_array().expect("array").clone()
        }
    }

    fn booking_change(kind: ChangeKind, changed: &[(&str, Value)]) -> RecordChange {
        RecordChange {
            entity: "Training_Booking__c".into(),
            kind,
            record_id: BOOKING_ID.into(),
            changed_fields: changed.iter().map(|(k, _)| k.to_string()).collect(),
            commit_user: SF_HUMAN_USER_ID.into(),
            values: changed
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn reply_on<'a>(messages: &'a [Value], channel: &str) -> &'a Value {
        messages
            .iter()
            .find(|m| m["channel"] == channel)
            .unwrap_or_else(|| panic!("no {channel} reply in {messages:?}"))
    }

    #[tokio::test]
    async fn only_a_json_array_posted_to_a_versioned_path_is_served() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let http = reqwest::Client::new();
        let url = format!("{}/cometd/62.0", server.base_url());

        let object = http
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({"channel": "/meta/handshake"}))
            .send()
            .await
            .unwrap();
        assert_eq!(object.status().as_u16(), 400);

        let not_json = http
            .post(&url)
            .bearer_auth(TOKEN)
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(not_json.status().as_u16(), 400);

        let get = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(get.status().as_u16(), 405);

        let no_version = http
            .post(format!("{}/cometd", server.base_url()))
            .bearer_auth(TOKEN)
            .json(&json!([]))
            .send()
            .await
            .unwrap();
        assert_eq!(no_version.status().as_u16(), 400);
        assert!(no_version
            .text()
            .await
            .unwrap()
            .contains("API version in the URI is mandatory"));

        let old = http
            .post(format!("{}/cometd/36.0", server.base_url()))
            .bearer_auth(TOKEN)
            .json(&json!([]))
            .send()
            .await
            .unwrap();
        assert_eq!(old.status().as_u16(), 400);
    }

    #[tokio::test]
    async fn handshake_looks_like_salesforce_and_sets_both_cookies() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let mut raw = Raw::new(&server);
        let reply = raw.handshake().await;
        assert_eq!(keys(&reply), keys(&fixture("bayeux_handshake_ok.json")[0]));
        assert_eq!(reply["successful"], true);
        assert_eq!(
            reply["ext"],
            json!({"replay": true, "payload.format": true})
        );
        assert_eq!(reply["supportedConnectionTypes"], json!(["long-polling"]));
        let names: Vec<&str> = raw
            .cookies
            .iter()
            .map(|c| c.split('=').next().unwrap())
            .collect();
        assert!(names.contains(&BROWSER_COOKIE), "{names:?}");
        assert!(names.contains(&LB_COOKIE), "{names:?}");

        // A second handshake from the same browser reuses its cookies.
        let before = raw.cookies.len();
        raw.handshake().await;
        assert_eq!(
            raw.cookies.len(),
            before,
            "no new cookies for a known browser"
        );
        assert_eq!(hub.client_count(), 2);
    }

    #[tokio::test]
    async fn websocket_only_handshake_is_refused() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let mut raw = Raw::new(&server);
        let (status, body) = raw
            .send(json!([{"channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["websocket"], "id": "1"}]))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body[0]["successful"], false);
        assert_eq!(body[0]["error"], "400::Invalid connection type websocket");
        assert_eq!(hub.client_count(), 0);
    }

    #[tokio::test]
    async fn messages_need_the_browser_cookie_of_their_client() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let mut raw = Raw::new(&server);
        raw.handshake().await;
        let cookies = std::mem::take(&mut raw.cookies);

        let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
        assert_eq!(reply["successful"], false);
        assert_eq!(
            reply["error"],
            format!(
                "400::Client {} has established a session, but no BAYEUX_BROWSER cookie present",
                raw.client_id
            )
        );

        raw.cookies = vec![format!("{BROWSER_COOKIE}=someoneelse")];
        let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
        assert_eq!(reply["error"], "403::Unknown client");
        assert_eq!(reply["advice"]["reconnect"], "handshake");

        raw.cookies = cookies;
        let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
        assert_eq!(reply["successful"], true, "{reply}");
        assert_eq!(reply["subscription"], BOOKING_CHANNEL);
    }

    #[tokio::test]
    async fn bad_or_missing_tokens_are_refused_like_salesforce_does() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;

        let mut raw = Raw::new(&server);
        raw.token = Some("expired");
        let reply = raw.handshake().await;
        let recorded = &fixture("bayeux_handshake_denied.json")[0];
        assert_eq!(reply["error"], "403::Handshake denied");
        assert_eq!(reply["ext"], recorded["ext"]);
        assert_eq!(reply["advice"], recorded["advice"]);

        raw.token = None;
        let reply = raw.handshake().await;
        assert_eq!(
            reply["ext"]["sfdc"]["failureReason"],
            "401::Request requires authentication"
        );

        // A valid client whose token stops working gets 401 on connect and is forgotten.
        raw.token = Some(TOKEN);
        raw.handshake().await;
        raw.token = Some("revoked");
        let replies = raw.connect(true).await;
        let reply = reply_on(&replies, "/meta/connect");
        let recorded = &fixture("bayeux_connect_auth_invalid.json")[0];
        assert_eq!(keys(reply), keys(recorded));
        assert_eq!(reply["error"], recorded["error"]);
        assert_eq!(reply["advice"], recorded["advice"]);
        assert_eq!(hub.client_count(), 0);
    }

    #[tokio::test]
    async fn connect_batches_queued_events_and_advises_only_once() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let mut raw = Raw::new(&server);
        raw.handshake().await;
        assert_eq!(
            raw.subscribe(BOOKING_CHANNEL, Some(-1)).await["successful"],
            true
        );

        let first = raw.connect(true).await;
        let reply = reply_on(&first, "/meta/connect");
        assert_eq!(keys(reply), keys(&fixture("bayeux_connect_first.json")[0]));
        assert_eq!(
            reply["advice"],
            json!({"interval": 0, "timeout": 110000, "reconnect": "retry"})
        );

        for status in ["Scheduled", "Rescheduled", "Cancelled"] {
            hub.publish(booking_change(
                ChangeKind::Update,
                &[("Status__c", json!(status))],
            ));
        }
        let batch = raw.connect(false).await;
        assert_eq!(batch.len(), 4, "{batch:?}");
        // Default placement: events first, in replay order, then the reply.
        let ids: Vec<i64> = batch[..3]
            .iter()
            .map(|m| m["data"]["event"]["replayId"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(batch[2]["data"]["payload"]["Status__c"], "Cancelled");
        let reply = &batch[3];
        assert_eq!(keys(reply), keys(&fixture("bayeux_connect_later.json")[0]));

        hub.set_event_placement(EventPlacement::Last);
        hub.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!("Done"))],
        ));
        let batch = raw.connect(false).await;
        assert_eq!(batch[0]["channel"], "/meta/connect");
        assert_eq!(batch[1]["data"]["event"]["replayId"], 4);
    }

    #[tokio::test]
    async fn the_first_connect_is_answered_at_once_even_without_timeout_zero() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let mut raw = Raw::new(&server);
        raw.handshake().await;
        raw.subscribe(BOOKING_CHANNEL, None).await;

        // Held, it would take the default 110 s; the deadline only bounds a failure.
        let first = tokio::time::timeout(Duration::from_secs(20), raw.connect(false))
            .await
            .expect("the first connect is not held");
        let reply = reply_on(&first, "/meta/connect");
        assert_eq!(reply["successful"], true);
        assert_eq!(reply["advice"]["reconnect"], "retry");

        // Later connects are held until an event or the hold ends.
        hub.set_connect_timeout(Duration::from_secs(30));
        let hub2 = Arc::clone(&hub);
        let publisher = tokio::spawn(async move {
            while hub2.lock().clients.values().all(|c| c.polling == 0) {
                tokio::task::yield_now().await;
            }
            hub2.publish(booking_change(
                ChangeKind::Update,
                &[("Status__c", json!("Held"))],
            ));
        });
        let second = raw.connect(false).await;
        publisher.await.unwrap();
        assert_eq!(second.len(), 2, "{second:?}");
        assert_eq!(second[0]["data"]["payload"]["Status__c"], "Held");
    }

    #[tokio::test]
    async fn a_request_may_carry_several_messages_answered_in_order() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        hub.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!("a"))],
        ));
        let mut raw = Raw::new(&server);
        raw.handshake().await;
        let id = raw.client_id.clone();
        let (status, body) = raw
            .send(json!([
                {"channel": "/meta/subscribe", "clientId": id, "subscription": BOOKING_CHANNEL,
                 "ext": {"replay": {BOOKING_CHANNEL: -2}}, "id": "10"},
                {"channel": "/meta/subscribe", "clientId": id, "subscription": "/data/Nope__ChangeEvent", "id": "11"},
                {"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling",
                 "advice": {"timeout": 0}, "id": "12"},
            ]))
            .await;
        assert_eq!(status, 200);
        let messages = body.as_array().unwrap();
        assert_eq!(messages.len(), 4, "{messages:?}");
        // The replayed event first, then the three replies in request order.
        assert_eq!(messages[0]["channel"], BOOKING_CHANNEL);
        let ids: Vec<&str> = messages[1..]
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["10", "11", "12"]);
        assert_eq!(messages[1]["successful"], true);
        assert_eq!(messages[2]["successful"], false);
        assert_eq!(messages[3]["successful"], true);
    }

    #[tokio::test]
    async fn a_held_connect_returns_when_an_event_arrives_or_the_hold_ends() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let mut raw = Raw::new(&server);
        raw.handshake().await;
        raw.subscribe(BOOKING_CHANNEL, None).await;
        raw.connect(true).await;

        hub.set_connect_timeout(Duration::from_millis(50));
        let empty = raw.connect(false).await;
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0]["successful"], true);

        hub.set_connect_timeout(Duration::from_secs(30));
        let hub2 = Arc::clone(&hub);
        let publisher = tokio::spawn(async move {
            // Publish only once the connect is really being held.
            while hub2.lock().clients.values().all(|c| c.polling == 0) {
                tokio::task::yield_now().await;
            }
            hub2.publish(booking_change(
                ChangeKind::Update,
                &[("Status__c", json!("X"))],
            ));
        });
        let started = std::time::Instant::now();
        let batch = raw.connect(false).await;
        publisher.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(batch.len(), 2, "{batch:?}");
    }

    #[tokio::test]
    async fn dropped_clients_get_unknown_client_even_mid_poll() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        let mut raw = Raw::new(&server);
        raw.handshake().await;
        raw.subscribe(BOOKING_CHANNEL, None).await;
        raw.connect(true).await;

        let hub2 = Arc::clone(&hub);
        let dropper = tokio::spawn(async move {
            while hub2.lock().clients.values().all(|c| c.polling == 0) {
                tokio::task::yield_now().await;
            }
            hub2.drop_clients();
        });
        let replies = raw.connect(false).await;
        dropper.await.unwrap();
        let reply = reply_on(&replies, "/meta/connect");
        let recorded = &fixture("bayeux_connect_unknown_client.json")[0];
        assert_eq!(keys(reply), keys(recorded));
        assert_eq!(reply["error"], recorded["error"]);
        assert_eq!(reply["advice"], recorded["advice"]);

        let reply = raw.subscribe(BOOKING_CHANNEL, None).await;
        assert_eq!(reply["error"], "403::Unknown client");
    }

    #[tokio::test]
    async fn subscribe_checks_the_channel_and_the_replay_id() {
        let hub = Arc::new(CometdHub::new());
        let server = start(&hub).await;
        for n in 0..5 {
            hub.publish(booking_change(
                ChangeKind::Update,
                &[("Status__c", json!(n))],
            ));
        }
        hub.forget_events_before(3);
        let mut raw = Raw::new(&server);
        raw.handshake().await;

        let reply = raw.subscribe("/data/Nope__ChangeEvent", None).await;
        assert_eq!(
            reply["error"],
            "400::The channel you requested to subscribe to does not exist /data/Nope__ChangeEvent"
        );
        assert_eq!(
            raw.subscribe("data/X", None).await["error"],
            "400::Channel subscriptions must start with a leading '/'"
        );

        for bad in [1, 2, 6, 99, -3] {
            let reply = raw.subscribe(BOOKING_CHANNEL, Some(bad)).await;
            assert_eq!(reply["successful"], false, "{bad}");
            assert_eq!(
                reply["error"],
                format!("400::The replayId {bad} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.")
            );
            assert_eq!(
                keys(&reply),
                keys(&fixture("bayeux_subscribe_invalid_replay.json")[0])
            );
        }

        // From 3: events 4 and 5 are replayed on the next connect.
        assert_eq!(
            raw.subscribe(BOOKING_CHANNEL, Some(3)).await["successful"],
            true
        );
        let batch = raw.connect(true).await;
        let ids: Vec<i64> = batch
            .iter()
            .filter(|m| m["channel"] == BOOKING_CHANNEL)
            .map(|m| m["data"]["event"]["replayId"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![4, 5]);

        // -2 on the all-objects channel: everything retained (3, 4, 5).
        assert_eq!(
            raw.subscribe(ALL_CHANGE_EVENTS_CHANNEL, Some(-2)).await["successful"],
            true
        );
        let batch = raw.connect(true).await;
        let ids: Vec<i64> = batch
            .iter()
            .filter(|m| m["channel"] == ALL_CHANGE_EVENTS_CHANNEL)
            .map(|m| m["data"]["event"]["replayId"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![3, 4, 5]);

        let history = hub.subscribe_history();
        assert!(history
            .iter()
            .any(|r| r.replay_from == 2 && !r.successful && r.channel == BOOKING_CHANNEL));
        assert!(history.iter().any(|r| r.replay_from == 3 && r.successful));
    }

    #[tokio::test]
    async fn published_changes_have_the_recorded_cdc_shape() {
        let hub = CometdHub::new();
        hub.publish(RecordChange {
            values: [
                ("Id", json!(BOOKING_ID)),
                ("Name", json!("TB-0001")),
                ("Status__c", json!("Scheduled")),
                ("Merchant_Name__c", Value::Null),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            ..booking_change(ChangeKind::Create, &[])
        });
        hub.publish(booking_change(
            ChangeKind::Update,
            &[
                ("Status__c", json!("Cancelled")),
                ("Lark_Meeting_Error__c", Value::Null),
            ],
        ));
        hub.publish(booking_change(ChangeKind::Delete, &[]));
        let events = hub.events();
        assert_eq!(events.len(), 3);
        let recorded_header =
            &fixture("booking_update.json")["data"]["payload"]["ChangeEventHeader"];

        let create = &events[0];
        assert_eq!(create["channel"], BOOKING_CHANNEL);
        assert_eq!(
            keys(&create["data"]),
            keys(&fixture("booking_create.json")["data"])
        );
        let payload = &create["data"]["payload"];
        assert_eq!(keys(&payload["ChangeEventHeader"]), keys(recorded_header));
        assert_eq!(payload["ChangeEventHeader"]["changedFields"], json!([]));
        assert_eq!(payload["Name"], "TB-0001");
        assert!(
            payload.get("Id").is_none(),
            "the id travels in the header only"
        );
        assert!(
            payload.get("Merchant_Name__c").is_none(),
            "null fields are left out of a create"
        );
        assert!(payload["CreatedDate"].as_str().unwrap().ends_with('Z'));

        let update = &events[1]["data"]["payload"];
        let header = &update["ChangeEventHeader"];
        assert_eq!(
            header["changedFields"],
            json!(["Status__c", "Lark_Meeting_Error__c", "LastModifiedDate"])
        );
        assert_eq!(header["nulledFields"], json!(["Lark_Meeting_Error__c"]));
        assert_eq!(header["commitUser"], SF_HUMAN_USER_ID);
        assert_eq!(header["changeOrigin"], DEFAULT_CHANGE_ORIGIN);
        assert!(
            update.get("Name").is_none(),
            "an update carries only changed fields"
        );
        assert!(
            header["commitNumber"].as_i64()
                > events[0]["data"]["payload"]["ChangeEventHeader"]["commitNumber"].as_i64()
        );

        let delete = events[2]["data"]["payload"].as_object().unwrap();
        assert_eq!(delete.keys().collect::<Vec<_>>(), vec!["ChangeEventHeader"]);

        // (The service's own tests check that its parser reads what the hub sends.)
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| {
                e["data"]["payload"]["ChangeEventHeader"]["changeType"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(kinds, vec!["CREATE", "UPDATE", "DELETE"]);
        assert_eq!(hub.last_replay_id(), 3);
    }

    #[tokio::test]
    async fn gap_overflow_and_platform_events_have_their_documented_shapes() {
        let hub = CometdHub::new();
        let gap = hub.inject_gap("Training_Booking__c", "GAP_UPDATE", &[BOOKING_ID]);
        let overflow = hub.inject_gap("Training_Booking__c", "GAP_OVERFLOW", &[BOOKING_ID]);
        let pe = hub.publish_platform_event(
            "/event/Booking_Change__e",
            json!({"Booking_Id__c": BOOKING_ID}),
        );
        assert_eq!((gap, overflow, pe), (1, 2, 3));
        let events = hub.events();

        let gap_payload = events[0]["data"]["payload"].as_object().unwrap();
        assert_eq!(gap_payload.len(), 1, "a gap event has no field values");
        let header = &events[0]["data"]["payload"]["ChangeEventHeader"];
        assert_eq!(header["changeType"], "GAP_UPDATE");
        assert_eq!(header["recordIds"], json!([BOOKING_ID]));

        assert_eq!(
            events[1]["data"]["payload"]["ChangeEventHeader"]["recordIds"],
            json!([EMPTY_RECORD_ID])
        );
        assert_eq!(
            events[1]["data"]["payload"]["ChangeEventHeader"]["changeType"],
            "GAP_OVERFLOW"
        );

        assert_eq!(
            keys(&events[2]["data"]["event"]),
            keys(&fixture("booking_platform_event.json")["data"]["event"])
        );
        assert_eq!(events[2]["channel"], "/event/Booking_Change__e");
        assert_eq!(events[2]["data"]["payload"]["Booking_Id__c"], BOOKING_ID);
    }

    fn context(token: &str, browser: Option<&str>) -> RequestContext {
        RequestContext {
            auth: Auth::Valid {
                token: token.into(),
                user_id: SF_INTEGRATION_USER_ID.into(),
            },
            browser_cookie: browser.map(str::to_string),
            has_lb_cookie: true,
            set_cookies: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_clients_are_dropped_after_the_client_timeout() {
        let hub = CometdHub::new();
        let mut rc = context(TOKEN, None);
        let reply = hub.handshake(
            &json!({"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]}),
            &mut rc,
        );
        assert_eq!(reply["successful"], true);
        assert_eq!(hub.client_count(), 1);
        tokio::time::advance(DEFAULT_CLIENT_TIMEOUT - Duration::from_secs(1)).await;
        assert_eq!(hub.client_count(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            hub.client_count(),
            0,
            "40 s without a reconnect drops the client"
        );

        let connect = json!({"channel": "/meta/connect", "clientId": reply["clientId"]});
        let (reply, _) = hub.connect(&connect, &rc, &accept_one_token()).await;
        assert_eq!(reply["error"], "403::Unknown client");
    }

    #[tokio::test(start_paused = true)]
    async fn old_events_leave_the_replay_window() {
        let hub = CometdHub::new();
        hub.set_retention(Duration::from_secs(60));
        hub.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!("a"))],
        ));
        tokio::time::advance(Duration::from_secs(61)).await;
        hub.publish(booking_change(
            ChangeKind::Update,
            &[("Status__c", json!("b"))],
        ));
        assert_eq!(hub.events().len(), 1);
        let st = hub.lock();
        assert!(!st.replay_valid(1));
        assert!(st.replay_valid(2));
        assert!(!st.replay_valid(3), "never issued");
    }

    #[test]
    fn cdc_channel_names_follow_salesforce() {
        assert_eq!(cdc_channel("Training_Booking__c"), BOOKING_CHANNEL);
        assert_eq!(cdc_channel("Account"), "/data/AccountChangeEvent");
    }

    #[test]
    fn random_placement_keeps_both_orders() {
        let events: Vec<Value> = (0..5).map(|i| json!({"e": i})).collect();
        let replies: Vec<Value> = (0..3).map(|i| json!({"r": i})).collect();
        for _ in 0..20 {
            let out = arrange(events.clone(), replies.clone(), EventPlacement::Random);
            let e: Vec<&Value> = out.iter().filter(|v| v.get("e").is_some()).collect();
            let r: Vec<&Value> = out.iter().filter(|v| v.get("r").is_some()).collect();
            assert_eq!(e, events.iter().collect::<Vec<_>>());
            assert_eq!(r, replies.iter().collect::<Vec<_>>());
        }
    }
}
