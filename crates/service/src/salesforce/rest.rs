//! The Salesforce REST client: session caching with single-flight re-login, query (with
//! paging), queryAll, update one and many (sObject Collections), create, delete, describe,
//! and per-kind call counters.
//!
//! Every call takes the cached session, sends `Authorization: Bearer`, and on a 401
//! (`INVALID_SESSION_ID`) logs in again exactly once and retries once. 5xx answers,
//! transport failures and timeouts are retried with backoff through
//! [`crate::retry::with_retry`]; 4xx answers are not. This module builds no SOQL from
//! user text: callers use [`super::soql`] for that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::{self, Session};
use super::error::SalesforceError;
use super::soql::RecordId;
use crate::config::{is_api_name, SalesforceSettings};
use crate::metrics::{names, Metrics};
use crate::retry::{with_retry, RetryPolicy};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("lark-vc-bridge/", env!("CARGO_PKG_VERSION"));
/// Most records one sObject Collections request may carry (more → `EXCEEDED_ID_LIMIT`).
// Source: REST API Developer Guide, "Update Records Using sObject Collections": "The list
// can contain up to 200 objects."
pub const COMPOSITE_BATCH_SIZE: usize = 200;
/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one REST request, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client builder with the settings every Salesforce HTTP client shares: user agent,
/// connect timeout, and no redirects (a token endpoint that redirects is misconfigured,
/// and following it would resend credentials elsewhere). The streaming client starts
/// from this, adds a cookie store and its own long-poll timeout.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
}

/// Number of HTTP requests sent per kind (each attempt counts: each one spends API budget).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Token requests.
    pub auth: u64,
    /// `query`, `queryAll` and `nextRecordsUrl` pages.
    pub query: u64,
    /// `PATCH /sobjects/Obj/Id`.
    pub update: u64,
    /// `PATCH /composite/sobjects`.
    pub composite: u64,
    /// `GET /sobjects/Obj/describe`.
    pub describe: u64,
    /// `POST /sobjects/Obj`.
    pub create: u64,
    /// `DELETE /sobjects/Obj/Id`.
    pub delete: u64,
}

#[derive(Clone, Copy, Debug)]
enum CallKind {
    Query,
    Update,
    Composite,
    Describe,
    Create,
    Delete,
}

impl CallKind {
    /// The `operation` label of the request-duration histogram.
    fn operation(self) -> &'static str {
        match self {
            CallKind::Query => "query",
            CallKind::Update => "update",
            CallKind::Composite => "composite_update",
            CallKind::Describe => "describe",
            CallKind::Create => "create",
            CallKind::Delete => "delete",
        }
    }
}

#[derive(Default)]
struct Counters {
    auth: AtomicU64,
    query: AtomicU64,
    update: AtomicU64,
    composite: AtomicU64,
    describe: AtomicU64,
    create: AtomicU64,
    delete: AtomicU64,
}

impl Counters {
    fn of(&self, kind: CallKind) -> &AtomicU64 {
        match kind {
            CallKind::Query => &self.query,
            CallKind::Update => &self.update,
            CallKind::Composite => &self.composite,
            CallKind::Describe => &self.describe,
            CallKind::Create => &self.create,
            CallKind::Delete => &self.delete,
        }
    }
}

/// One error of a per-record result (`{statusCode, message, fields}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SalesforceApiError {
    /// e.g. `FIELD_CUSTOM_VALIDATION_EXCEPTION`, `STRING_TOO_LONG`.
    #[serde(rename = "statusCode", default)]
    pub status_code: String,
    /// Human-readable reason.
    #[serde(default)]
    pub message: String,
    /// Fields the error is about (may be empty).
    #[serde(default)]
    pub fields: Vec<String>,
}

/// The outcome of one record in an sObject Collections request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResult {
    /// The record's id. Salesforce omits it on failure; the client fills in the id it sent.
    pub id: Option<RecordId>,
    /// Whether this record was saved.
    pub success: bool,
    /// Why it failed (empty on success).
    pub errors: Vec<SalesforceApiError>,
}

/// What `describe` says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDescribe {
    /// API name, e.g. `Training_Booking__c`.
    pub name: String,
    /// Every field the integration user can see.
    pub fields: Vec<FieldDescribe>,
}

impl ObjectDescribe {
    /// The field with this API name (case-insensitive, as Salesforce treats names).
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// What `describe` says about one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescribe {
    /// API name, e.g. `Trainer__c`.
    pub name: String,
    /// `datetime`, `string`, `reference`, `picklist`, `url`, `textarea`, `boolean`,
    /// `email`, `id`, …
    pub type_: String,
    /// Maximum length of text fields (0 for others).
    pub length: u32,
    /// Active picklist values.
    pub picklist_values: Vec<String>,
    /// Objects a reference field points to.
    pub reference_to: Vec<String>,
    /// `Trainer__r` for the reference field `Trainer__c`.
    pub relationship_name: Option<String>,
    /// Whether the integration user may write the field.
    pub updateable: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage {
    #[serde(default)]
    done: bool,
    next_records_url: Option<String>,
    #[serde(default)]
    records: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
struct SaveResultWire {
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<SalesforceApiError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeWire {
    name: String,
    #[serde(default)]
    fields: Vec<FieldWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldWire {
    name: String,
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    length: u32,
    #[serde(default)]
    picklist_values: Vec<PicklistWire>,
    #[serde(default)]
    reference_to: Vec<String>,
    relationship_name: Option<String>,
    #[serde(default)]
    updateable: bool,
}

#[derive(Deserialize)]
struct PicklistWire {
    value: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// The Salesforce REST client. Cheap to clone: clones share the session and counters.
#[derive(Clone)]
pub struct SalesforceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    settings: SalesforceSettings,
    /// The cached session. Held across a login so concurrent callers wait for it
    /// instead of logging in again (single flight).
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    generation: AtomicU64,
    counters: Counters,
    policy: RetryPolicy,
    /// Where request durations go, once the app attaches its metrics.
    metrics: OnceLock<Metrics>,
}

impl std::fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("login_url", &self.inner.settings.login_url.as_str())
            .field("api_version", &self.inner.settings.api_version)
            .finish_non_exhaustive()
    }
}

impl SalesforceClient {
    /// A client with the default retry policy. Builds one HTTP client; does not log in.
    pub fn new(settings: &SalesforceSettings) -> Result<Self, SalesforceError> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    /// A client with an explicit retry policy (tests use short delays).
    pub fn with_retry_policy(
        settings: &SalesforceSettings,
        policy: RetryPolicy,
    ) -> Result<Self, SalesforceError> {
        let http = http_client_builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SalesforceError::InvalidInput(format!("cannot build HTTP client: {e}")))?;
        Ok(SalesforceClient {
            inner: Arc::new(Inner {
                http,
                settings: settings.clone(),
                session: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
                counters: Counters::default(),
                policy,
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Records the duration of every request from now on in `metrics` (the first call
    /// wins; every clone shares it).
    pub fn record_metrics_in(&self, metrics: &Metrics) {
        let _ = self.inner.metrics.set(metrics.clone());
    }

    fn observe(&self, operation: &'static str, started: Instant) {
        if let Some(m) = self.inner.metrics.get() {
            m.observe(
                names::SALESFORCE_REQUEST_DURATION,
                &[("operation", operation)],
                started.elapsed().as_secs_f64(),
            );
        }
    }

    /// The HTTP client REST calls use.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// API version without the `v`, e.g. `62.0`.
    pub fn api_version(&self) -> &str {
        &self.inner.settings.api_version
    }

    /// The settings the client was built from.
    pub fn settings(&self) -> &SalesforceSettings {
        &self.inner.settings
    }

    /// Requests sent so far, per kind.
    pub fn call_counts(&self) -> CallCounts {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CallCounts {
            auth: get(&c.auth),
            query: get(&c.query),
            update: get(&c.update),
            composite: get(&c.composite),
            describe: get(&c.describe),
            create: get(&c.create),
            delete: get(&c.delete),
        }
    }

    /// The cached session; logs in on first use.
    pub async fn session(&self) -> Result<Arc<Session>, SalesforceError> {
        let mut slot = self.inner.session.lock().await;
        if let Some(session) = slot.as_ref() {
            return Ok(session.clone());
        }
        let session = Arc::new(self.login().await?);
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Replaces `stale` with a fresh session. If someone already did (the cached
    /// session's generation differs from `stale`'s), returns theirs without logging in.
    pub async fn relogin(&self, stale: &Session) -> Result<Arc<Session>, SalesforceError> {
        let mut slot = self.inner.session.lock().await;
        if let Some(current) = slot.as_ref() {
            if current.generation != stale.generation {
                return Ok(current.clone());
            }
        }
        // A failed login leaves no session: the next call logs in from scratch.
        *slot = None;
        let session = Arc::new(self.login().await?);
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn login(&self) -> Result<Session, SalesforceError> {
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        // Timed whole (its retries included): the token request lives in `auth`.
        let started = Instant::now();
        let session = auth::login(
            &self.inner.http,
            &self.inner.settings,
            &self.inner.policy,
            &self.inner.counters.auth,
            generation,
        )
        .await;
        self.observe("login", started);
        session
    }

    /// `{instance_url}/services/data/v{version}/{path}`.
    fn data_url(&self, session: &Session, path: &str) -> String {
        format!(
            "{}/services/data/v{}/{}",
            session.instance_url.as_str().trim_end_matches('/'),
            self.inner.settings.api_version,
            path
        )
    }

    /// Sends one request built by `build`, retrying 5xx/transport failures, and handles
    /// an invalid session with exactly one re-login and one more try.
    async fn call<F>(
        &self,
        kind: CallKind,
        what: &str,
        build: F,
    ) -> Result<(u16, Vec<u8>), SalesforceError>
    where
        F: Fn(&reqwest::Client, &Session) -> reqwest::RequestBuilder,
    {
        let session = self.session().await?;
        let (status, body) = self.send_retrying(kind, what, &build, &session).await?;
        if status != 401 {
            return Ok((status, body));
        }
        tracing::info!(
            operation = what,
            generation = session.generation,
            "Salesforce session invalid; logging in again"
        );
        let fresh = self.relogin(&session).await?;
        let (status, body) = self.send_retrying(kind, what, &build, &fresh).await?;
        if status == 401 {
            tracing::warn!(
                operation = what,
                "Salesforce session invalid right after re-login"
            );
            return Err(SalesforceError::Unauthorized);
        }
        Ok((status, body))
    }

    async fn send_retrying<F>(
        &self,
        kind: CallKind,
        what: &str,
        build: &F,
        session: &Session,
    ) -> Result<(u16, Vec<u8>), SalesforceError>
    where
        F: Fn(&reqwest::Client, &Session) -> reqwest::RequestBuilder,
    {
        with_retry(&self.inner.policy, what, || async {
            self.inner.counters.of(kind).fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let answer = async {
                let response = build(&self.inner.http, session)
                    .bearer_auth(session.access_token.expose_secret())
                    .send()
                    .await
                    .map_err(SalesforceError::from_reqwest)?;
                let status = response.status().as_u16();
                let body =
                    crate::outbound::read_capped(response, crate::outbound::SALESFORCE_BODY_CAP)
                        .await
                        .map_err(|e| match e {
                            crate::outbound::ReadError::Transport(e) => {
                                SalesforceError::from_reqwest(e)
                            }
                            crate::outbound::ReadError::TooLarge { cap } => {
                                SalesforceError::Unexpected {
                                    status,
                                    body: crate::outbound::ReadError::too_large_text(cap),
                                }
                            }
                        })?;
                Ok::<_, SalesforceError>((status, body))
            }
            .await;
            self.observe(kind.operation(), started);
            let (status, body) = answer?;
            if status >= 500 {
                return Err(SalesforceError::from_rest_response(status, &body));
            }
            Ok((status, body))
        })
        .await
    }

    /// Runs a SOQL query and follows `nextRecordsUrl` until `done`.
    pub async fn query(&self, soql: &str) -> Result<Vec<Map<String, Value>>, SalesforceError> {
        self.query_pages("query", soql).await
    }

    /// Like [`query`](Self::query) through `/queryAll`: deleted (`IsDeleted = true`) and
    /// archived rows are included.
    pub async fn query_all(&self, soql: &str) -> Result<Vec<Map<String, Value>>, SalesforceError> {
        self.query_pages("queryAll", soql).await
    }

    #[tracing::instrument(name = "salesforce.query", skip_all, fields(resource = %resource))]
    async fn query_pages(
        &self,
        resource: &str,
        soql: &str,
    ) -> Result<Vec<Map<String, Value>>, SalesforceError> {
        let (status, body) = self
            .call(CallKind::Query, resource, |http, s| {
                http.get(self.data_url(s, resource)).query(&[("q", soql)])
            })
            .await?;
        let mut page = parse_query_page(status, &body)?;
        // The text goes as soon as it is parsed: a page of bookings is a few hundred KB.
        drop(body);
        let mut records = std::mem::take(&mut page.records);
        while let (false, Some(next)) = (page.done, page.next_records_url.take()) {
            if !next.starts_with("/services/data/") {
                return Err(SalesforceError::Unexpected {
                    status,
                    body: format!("nextRecordsUrl outside the data API: {next}"),
                });
            }
            let (status, body) = self
                .call(CallKind::Query, "query more", |http, s| {
                    http.get(format!(
                        "{}{}",
                        s.instance_url.as_str().trim_end_matches('/'),
                        next
                    ))
                })
                .await?;
            page = parse_query_page(status, &body)?;
            drop(body);
            records.append(&mut page.records);
        }
        Ok(records)
    }

    /// `PATCH /sobjects/{object}/{id}` → 204.
    #[tracing::instrument(name = "salesforce.update", skip_all, fields(object = %object, record = %id))]
    pub async fn update(
        &self,
        object: &str,
        id: &RecordId,
        fields: Map<String, Value>,
    ) -> Result<(), SalesforceError> {
        check_object(object)?;
        let path = format!("sobjects/{object}/{id}");
        let (status, body) = self
            .call(CallKind::Update, "update", |http, s| {
                http.patch(self.data_url(s, &path)).json(&fields)
            })
            .await?;
        match status {
            200 | 204 => Ok(()),
            _ => Err(SalesforceError::from_rest_response(status, &body)),
        }
    }

    /// Updates many records through sObject Collections (`PATCH /composite/sobjects`,
    /// `allOrNone: false`), in requests of at most [`COMPOSITE_BATCH_SIZE`]. Returns one
    /// result per input, in input order. A request-level failure fails the whole call
    /// (updates are idempotent: the caller may simply retry everything).
    #[tracing::instrument(name = "salesforce.update_many", skip_all, fields(object = %object, records = records.len()))]
    pub async fn update_many(
        &self,
        object: &str,
        records: Vec<(RecordId, Map<String, Value>)>,
    ) -> Result<Vec<RecordResult>, SalesforceError> {
        check_object(object)?;
        let mut results = Vec::with_capacity(records.len());
        for chunk in records.chunks(COMPOSITE_BATCH_SIZE) {
            let wire: Vec<Value> = chunk
                .iter()
                .map(|(id, fields)| {
                    let mut record = Map::new();
                    record.insert("attributes".into(), serde_json::json!({ "type": object }));
                    record.insert("id".into(), Value::String(id.to_string()));
                    for (k, v) in fields {
                        record.insert(k.clone(), v.clone());
                    }
                    Value::Object(record)
                })
                .collect();
            let body = serde_json::json!({ "allOrNone": false, "records": wire });
            let (status, bytes) = self
                .call(CallKind::Composite, "update many", |http, s| {
                    http.patch(self.data_url(s, "composite/sobjects"))
                        .json(&body)
                })
                .await?;
            if status != 200 {
                return Err(SalesforceError::from_rest_response(status, &bytes));
            }
            let saved: Vec<SaveResultWire> =
                serde_json::from_slice(&bytes).map_err(|_| unexpected(status, &bytes))?;
            if saved.len() != chunk.len() {
                return Err(unexpected(status, &bytes));
            }
            for ((sent_id, _), result) in chunk.iter().zip(saved) {
                results.push(RecordResult {
                    id: Some(
                        result
                            .id
                            .and_then(|id| RecordId::parse(&id).ok())
                            .unwrap_or_else(|| sent_id.clone()),
                    ),
                    success: result.success,
                    errors: result.errors,
                });
            }
        }
        Ok(results)
    }

    /// `POST /sobjects/{object}` → 201 `{id, success, errors}`; returns the new id.
    pub async fn create(
        &self,
        object: &str,
        fields: Map<String, Value>,
    ) -> Result<RecordId, SalesforceError> {
        check_object(object)?;
        let path = format!("sobjects/{object}");
        let (status, body) = self
            .call(CallKind::Create, "create", |http, s| {
                http.post(self.data_url(s, &path)).json(&fields)
            })
            .await?;
        if status != 201 && status != 200 {
            return Err(SalesforceError::from_rest_response(status, &body));
        }
        let saved: SaveResultWire =
            serde_json::from_slice(&body).map_err(|_| unexpected(status, &body))?;
        match (saved.success, saved.id.as_deref().map(RecordId::parse)) {
            (true, Some(Ok(id))) => Ok(id),
            _ => Err(unexpected(status, &body)),
        }
    }

    /// `DELETE /sobjects/{object}/{id}` → 204.
    pub async fn delete(&self, object: &str, id: &RecordId) -> Result<(), SalesforceError> {
        check_object(object)?;
        let path = format!("sobjects/{object}/{id}");
        let (status, body) = self
            .call(CallKind::Delete, "delete", |http, s| {
                http.delete(self.data_url(s, &path))
            })
            .await?;
        match status {
            200 | 204 => Ok(()),
            _ => Err(SalesforceError::from_rest_response(status, &body)),
        }
    }

    /// `GET /sobjects/{object}/describe`.
    #[tracing::instrument(name = "salesforce.describe", skip_all, fields(object = %object))]
    pub async fn describe(&self, object: &str) -> Result<ObjectDescribe, SalesforceError> {
        check_object(object)?;
        let path = format!("sobjects/{object}/describe");
        let (status, body) = self
            .call(CallKind::Describe, "describe", |http, s| {
                http.get(self.data_url(s, &path))
            })
            .await?;
        if status != 200 {
            return Err(SalesforceError::from_rest_response(status, &body));
        }
        let wire: DescribeWire =
            serde_json::from_slice(&body).map_err(|_| unexpected(status, &body))?;
        Ok(ObjectDescribe {
            name: wire.name,
            fields: wire
                .fields
                .into_iter()
                .map(|f| FieldDescribe {
                    name: f.name,
                    type_: f.type_,
                    length: f.length,
                    picklist_values: f
                        .picklist_values
                        .into_iter()
                        .filter(|p| p.active)
                        .map(|p| p.value)
                        .collect(),
                    reference_to: f.reference_to,
                    relationship_name: f.relationship_name,
                    updateable: f.updateable,
                })
                .collect(),
        })
    }
}

fn check_object(object: &str) -> Result<(), SalesforceError> {
    if is_api_name(object) {
        Ok(())
    } else {
        Err(SalesforceError::InvalidInput(format!(
            "{object:?} is not a Salesforce object API name"
        )))
    }
}

fn unexpected(status: u16, body: &[u8]) -> SalesforceError {
    SalesforceError::Unexpected {
        status,
        body: super::error::truncate(&String::from_utf8_lossy(body)),
    }
}

fn parse_query_page(status: u16, body: &[u8]) -> Result<QueryPage, SalesforceError> {
    if status != 200 {
        return Err(SalesforceError::from_rest_response(status, body));
    }
    serde_json::from_slice(body).map_err(|_| unexpected(status, body))
}

#[cfg(test)]
mod tests;
