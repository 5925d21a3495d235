//! The hub's state: Bayeux clients, the replay log and its retention, and the public
//! API tests and the record store use (publish, fault knobs, the router).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use axum::routing::post;
use rand::Rng as _;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::*;

/// A retained event: delivered on every channel in `channels`.
pub(super) struct StoredEvent {
    pub(super) replay_id: i64,
    pub(super) channels: Vec<String>,
    pub(super) data: Value,
    pub(super) published_at: Instant,
}

/// A Bayeux client the hub knows.
pub(super) struct Client {
    pub(super) browser: String,
    pub(super) user_id: String,
    pub(super) subscriptions: BTreeSet<String>,
    pub(super) queue: VecDeque<Value>,
    /// Bumped whenever a held connect must look at the client again.
    pub(super) wake: watch::Sender<()>,
    /// Number of `/meta/connect` requests being held for this client.
    pub(super) polling: usize,
    /// Identifies the newest connect; an older one still held returns at once.
    pub(super) connect_epoch: u64,
    /// Time of the last request or response, for the reconnect timeout.
    pub(super) last_contact: Instant,
    /// Whether a connect reply was already sent (the first one carries the advice).
    pub(super) connected_once: bool,
}

pub(super) struct HubState {
    pub(super) events: VecDeque<StoredEvent>,
    pub(super) last_replay_id: i64,
    pub(super) forgotten_before: i64,
    pub(super) retention: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) client_timeout: Duration,
    /// Fault knob: an `advice.interval` every successful connect reply carries.
    pub(super) advised_interval: Option<Duration>,
    pub(super) placement: EventPlacement,
    pub(super) cdc_entities: BTreeSet<String>,
    pub(super) platform_channels: BTreeSet<String>,
    pub(super) clients: HashMap<String, Client>,
    pub(super) commit_number: i64,
    pub(super) change_origin: String,
    pub(super) subscribe_history: Vec<SubscribeRecord>,
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
            advised_interval: None,
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
    pub(super) fn housekeep(&mut self, now: Instant) {
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
    pub(super) fn replay_valid(&self, replay_from: i64) -> bool {
        match replay_from {
            -1 | -2 => true,
            n if n < 0 => false,
            // The event itself must still be retained (and must have been issued).
            n => self.events.front().is_some_and(|e| e.replay_id <= n) && n <= self.last_replay_id,
        }
    }

    pub(super) fn channel_exists(&self, channel: &str) -> bool {
        channel == ALL_CHANGE_EVENTS_CHANNEL
            || self.platform_channels.contains(channel)
            || self.cdc_entities.iter().any(|e| cdc_channel(e) == channel)
    }

    /// Appends an event to the log and queues it for every subscribed client.
    pub(super) fn append(
        &mut self,
        channels: Vec<String>,
        data_for: impl FnOnce(i64) -> Value,
    ) -> i64 {
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

    pub(super) fn next_commit_number(&mut self) -> i64 {
        self.commit_number += rand::thread_rng().gen_range(1..1000);
        self.commit_number
    }
}

impl CometdHub {
    /// A hub with CDC enabled for `Training_Booking__c` and the Salesforce timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
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

    /// Fault knob: every successful connect reply advises this `interval` (Salesforce
    /// sends 0), e.g. an absurd ten hours to show a client caps what it is told; `None`
    /// restores the recorded behaviour.
    pub fn advise_interval(&self, interval: Option<Duration>) {
        self.lock().advised_interval = interval;
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
