//! Shared set-up for the Salesforce client's tests: the real client against the
//! Salesforce simulator over loopback HTTP, with retries that do not really wait.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Map, Value};

use super::*;
use crate::config::Settings;
use crate::retry::RetryPolicy;
use lvb_simulators::salesforce::SalesforceSim;

pub(crate) const BOOKING: &str = "Training_Booking__c";
pub(crate) const TRAINER: &str = "Onboarding_Trainer__c";
pub(crate) const TOKEN_PATH: &str = "/services/oauth2/token";

pub(crate) struct Env {
    pub(crate) sim: SalesforceSim,
    pub(crate) client: SalesforceClient,
    pub(crate) _dir: tempfile::TempDir,
}

/// Retries without real waiting: the tests count attempts, not seconds.
pub(crate) fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_hinted_delay: Duration::from_millis(5),
        attempt_timeout: Duration::from_secs(20),
    }
}

pub(crate) async fn env_with(
    configure: impl FnOnce(&mut crate::config::SalesforceSettings),
) -> Env {
    let sim = SalesforceSim::start(0).await.expect("simulator starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::for_simulators(
        &sim.base_url(),
        "http://127.0.0.1:9",
        &dir.path().join("store.db"),
    )
    .expect("settings");
    configure(&mut settings.salesforce);
    let client =
        SalesforceClient::with_retry_policy(&settings.salesforce, fast_policy()).expect("client");
    Env {
        sim,
        client,
        _dir: dir,
    }
}

pub(crate) async fn env() -> Env {
    env_with(|_| {}).await
}

pub(crate) fn token_calls(sim: &SalesforceSim) -> usize {
    sim.requests().count(&Method::POST, TOKEN_PATH)
}

pub(crate) fn fields(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

pub(crate) fn id(s: &str) -> RecordId {
    RecordId::parse(s).expect("valid id")
}
