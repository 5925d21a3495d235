//! Salesforce simulator (design §5): a stateful, in-process org served over real HTTP on
//! loopback, speaking Salesforce's wire formats so the real client — or any third-party
//! client — works against it unchanged.
//!
//! - [`oauth`]  — `POST /services/oauth2/token` (three flows) and the session store
//! - [`rest`]   — `/services/data/vXX.X/…`: query/queryAll with paging, sObject rows,
//!   create, delete, describe, sObject Collections update
//! - [`query`]  — the SOQL subset (parser and evaluator)
//! - [`schema`] — objects and fields (a table others extend) and value validation
//! - [`store`]  — records, validated writes, and the CDC changes every write publishes
//! - [`cometd`] — the streaming hub (owned by the streaming work); every committed write
//!   is published to it as a [`RecordChange`]
//! - [`oversized`] — fault knob: a token or connect answer of any size, streamed
//!
//! The test/demo API on [`SalesforceSim`] writes through the same store as REST, so its
//! writes raise change events exactly like REST writes. It is never used by the
//! service's production path.

pub mod cometd;
pub mod oauth;
pub mod oversized;
pub mod query;
pub mod rest;
pub mod schema;
pub mod store;

use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

use self::cometd::{CometdHub, RecordChange, SessionCheck};
use self::oauth::Sessions;
use self::oversized::{Oversized, OversizedAnswer};
use self::schema::ObjectDef;
use self::store::Org;
use super::common::{serve, Recorder, RunningServer};
use super::{Faults, RequestLog};

/// Username of the simulated integration user (password and JWT flows).
pub const SF_USERNAME: &str = "integration@lark-vc-bridge.sim";
/// Password of the simulated integration user (no security token is needed).
pub const SF_PASSWORD: &str = "sim-password";
/// The API version the simulator advertises first.
pub const DEFAULT_API_VERSION: &str = "62.0";
/// Public half of the TEST-ONLY key pair in `fixtures/salesforce/`: the simulated
/// connected app's certificate key, so the JWT bearer flow works out of the box.
pub const TEST_JWT_PUBLIC_KEY_PEM: &str =
    include_str!("../../../../fixtures/salesforce/test-only-jwt-public-key.pem");
/// Absolute path (in the source tree) of the TEST-ONLY private key matching
/// [`TEST_JWT_PUBLIC_KEY_PEM`], for `salesforce.private_key_path` in tests and demos.
pub const TEST_JWT_PRIVATE_KEY_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/salesforce/test-only-jwt-private-key.pem"
);

/// State shared by the simulator's handlers and its test API.
pub struct Shared {
    pub(crate) org: Mutex<Org>,
    pub(crate) sessions: Mutex<Sessions>,
    pub(crate) hub: Arc<CometdHub>,
    pub(crate) jwt_public_key_pem: Mutex<String>,
    base_url: OnceLock<String>,
}

impl Shared {
    /// `http://127.0.0.1:PORT` (login URL and instance URL alike).
    pub fn base_url(&self) -> String {
        self.base_url.get().cloned().unwrap_or_default()
    }
}

/// A running Salesforce simulator. Clones share the org; the server stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct SalesforceSim {
    shared: Arc<Shared>,
    server: Arc<RunningServer>,
    log: RequestLog,
    faults: Faults,
    oversized: Oversized,
}

impl std::fmt::Debug for SalesforceSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceSim")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl SalesforceSim {
    /// Starts on `127.0.0.1:port` (0 = any free port) with the default schema, the two
    /// simulated users and no other records.
    pub async fn start(port: u16) -> std::io::Result<SalesforceSim> {
        let hub = Arc::new(CometdHub::default());
        let shared = Arc::new(Shared {
            org: Mutex::new(Org::new(hub.clone())),
            sessions: Mutex::new(Sessions::default()),
            hub: hub.clone(),
            jwt_public_key_pem: Mutex::new(TEST_JWT_PUBLIC_KEY_PEM.to_string()),
            base_url: OnceLock::new(),
        });
        let check_shared = shared.clone();
        let check: SessionCheck = Arc::new(move |token: &str| {
            check_shared
                .sessions
                .lock()
                .expect("sessions")
                .user_of(token)
        });
        let router = rest::router(shared.clone())
            .route(
                "/services/oauth2/token",
                axum::routing::post(oauth::token).with_state(shared.clone()),
            )
            .merge(hub.router(check));
        let oversized = Oversized::default();
        let router = router.layer(axum::middleware::from_fn_with_state(
            oversized.clone(),
            oversized::layer,
        ));
        let log = RequestLog::default();
        let faults = Faults::default();
        let server = serve(
            router,
            Recorder {
                log: log.clone(),
                faults: faults.clone(),
            },
            port,
        )
        .await?;
        let _ = shared.base_url.set(server.base_url());
        Ok(SalesforceSim {
            shared,
            server: Arc::new(server),
            log,
            faults,
            oversized,
        })
    }

    /// `http://127.0.0.1:PORT`: both the login URL and the instance URL.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Every request received, for counting calls.
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }

    /// Fault injection (status codes, latency) applied before the simulator's own handling.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The next `times` requests for `answer` (the token endpoint, or a CometD request
    /// carrying `/meta/connect`) are answered with a body of `bytes` bytes, streamed
    /// chunked from a static buffer (see [`oversized`]). They are recorded like any other.
    pub fn stream_oversized_answers(&self, answer: OversizedAnswer, bytes: u64, times: usize) {
        self.oversized.arm(answer, bytes, times);
    }

    /// Bytes of oversized answers sent so far: what left the simulator before each
    /// client stopped reading (plus what the sockets buffered), not what was armed.
    pub fn oversized_bytes_sent(&self) -> u64 {
        self.oversized.bytes_sent()
    }

    /// Oversized answers that are over: sent to the end, or abandoned by their client.
    pub fn oversized_answers_finished(&self) -> usize {
        self.oversized.answers_finished()
    }

    /// The CometD hub every committed write is published to.
    pub fn hub(&self) -> &Arc<CometdHub> {
        &self.shared.hub
    }

    fn org(&self) -> std::sync::MutexGuard<'_, Org> {
        self.shared.org.lock().expect("org")
    }

    /// Creates a record as `as_user` (an 18-char user id) and returns its 18-char id.
    /// Validated like a REST create and published as a CREATE change.
    ///
    /// # Panics
    /// When Salesforce would refuse the write (unknown object or field, invalid value):
    /// a test helper fails loudly rather than silently.
    pub fn insert(&self, object: &str, fields: Value, as_user: &str) -> String {
        let fields = as_object(fields, "insert");
        let mut org = self.org();
        let id = org
            .create(object, &fields, as_user)
            .unwrap_or_else(|e| panic!("SalesforceSim::insert({object}) refused: {e}"));
        org.commit();
        id
    }

    /// Updates a record as `as_user`; published as an UPDATE change. Injected write
    /// rejections do not apply (they model the org refusing the service's API writes).
    ///
    /// # Panics
    /// When Salesforce would refuse the write.
    pub fn update(&self, object: &str, id: &str, fields: Value, as_user: &str) {
        let fields = as_object(fields, "update");
        let mut org = self.org();
        org.update(object, id, &fields, as_user, false)
            .unwrap_or_else(|e| panic!("SalesforceSim::update({object}, {id}) refused: {e}"));
        org.commit();
    }

    /// Deletes a record as `as_user` (to the recycle bin: queryAll still sees it);
    /// published as a DELETE change.
    ///
    /// # Panics
    /// When the record does not exist or is already deleted.
    pub fn delete(&self, object: &str, id: &str, as_user: &str) {
        let mut org = self.org();
        org.delete(object, id, as_user)
            .unwrap_or_else(|e| panic!("SalesforceSim::delete({object}, {id}) refused: {e}"));
        org.commit();
    }

    /// A live record with every field (system fields included, no `attributes`); None
    /// when unknown or deleted. Accepts 15- or 18-char ids.
    pub fn get(&self, object: &str, id: &str) -> Option<Map<String, Value>> {
        self.org().live(object, id).cloned()
    }

    /// Every live record of an object, in creation order.
    pub fn records(&self, object: &str) -> Vec<Map<String, Value>> {
        self.org().live_rows(object)
    }

    /// Every change published so far (CREATE/UPDATE/DELETE), in commit order.
    pub fn changes(&self) -> Vec<RecordChange> {
        self.org().published().to_vec()
    }

    /// Every access token issued so far stops working: REST answers 401
    /// `INVALID_SESSION_ID`, and the CometD hub's session check returns None.
    pub fn expire_sessions(&self) {
        self.shared.sessions.lock().expect("sessions").expire_all();
        // Held long-polls re-check their tokens now, as Salesforce does while connected.
        self.shared.hub.revalidate_sessions();
    }

    /// Removes a field: describe no longer lists it, SOQL naming it fails
    /// `INVALID_FIELD`, writes to it fail `INVALID_FIELD`.
    pub fn remove_field(&self, object: &str, field: &str) {
        self.org().remove_field(object, field);
    }

    /// Adds or replaces an object definition (extends the schema).
    pub fn define_object(&self, object: ObjectDef) {
        self.org().define_object(object);
    }

    /// Records per query batch (default 2000, Salesforce's default); small values test
    /// `nextRecordsUrl` paging.
    pub fn set_query_batch_size(&self, n: usize) {
        self.org().batch_size = n.max(1);
    }

    /// The public key (PEM) of the connected app's certificate, which JWT bearer
    /// assertions must be signed for. Defaults to [`TEST_JWT_PUBLIC_KEY_PEM`].
    pub fn set_jwt_public_key_pem(&self, pem: &str) {
        *self.shared.jwt_public_key_pem.lock().expect("jwt key") = pem.to_string();
    }

    /// The next `times` API updates of `object` (PATCH one → 400 `[{…}]`; sObject
    /// Collections → that record `success: false`) fail with `error_code` and `message`,
    /// as an org validation rule would (e.g. `FIELD_CUSTOM_VALIDATION_EXCEPTION`).
    pub fn reject_writes(&self, object: &str, times: usize, error_code: &str, message: &str) {
        self.org().reject_writes(object, times, error_code, message);
    }

    /// A validation rule that refuses every API write to the record `id` (PATCH one → 400
    /// `[{message, errorCode: "FIELD_CUSTOM_VALIDATION_EXCEPTION", fields}]`; inside an
    /// sObject Collections call only that record gets `success: false`, the call is 200).
    /// `None` lifts it, as an admin fixing the rule would.
    pub fn set_validation_rule(&self, id: &str, message: Option<&str>) {
        self.org().set_validation_rule(id, message);
    }

    /// Sets the base URL of the trainer's `Lark_Connect_Link__c` formula
    /// (`{base}/oauth/lark/start?trainer={Id}`; default `http://localhost:8080`).
    pub fn set_connect_link_base(&self, base: &str) {
        let template = format!(
            "{}/oauth/lark/start?trainer={{Id}}",
            base.trim_end_matches('/')
        );
        self.org()
            .set_formula(schema::TRAINER_OBJECT, "Lark_Connect_Link__c", &template);
    }
}

fn as_object(fields: Value, what: &str) -> Map<String, Value> {
    match fields {
        Value::Object(map) => map,
        other => panic!("SalesforceSim::{what}: fields must be a JSON object, got {other}"),
    }
}

#[cfg(test)]
mod tests;
