//! Built-in simulators of Salesforce and Lark: faithful, stateful, in-process fakes of
//! both sides' wire formats (design §4–§5), served over real HTTP on loopback. Used by
//! `demo`, `simulate` and the tests; a third-party client pointed at them must work
//! unchanged. Every request is recorded ([`RequestLog`]) so tests can count calls, and
//! [`Faults`] injects errors and latency.
//!
//! This crate uses nothing of the service (design §6): it is a stand-in for the outside
//! world, built from the published wire formats, so a test against it checks the
//! service's clients rather than agreeing with them. Module map:
//!
//! - [`salesforce`] — OAuth token endpoint, REST (SOQL subset, sObjects, collections,
//!   describe) and the CometD hub that raises change events from every write
//! - [`lark`]       — app/tenant tokens, user OAuth (v2 and v1), user_info, VC reserves
//!   (user- and tenant-token), bot messages to users and group chats, Calendar v4 events
//!   and attendees, `batch_get_id`, rate limits, events over the long connection
//!   (`/callback/ws/endpoint` and its `pbbp2` WebSocket), and a reserved meeting's life
//!   (`meetings/:id`, `list_by_no`, and simulator-only `/sim/` endpoints to drive it)
//! - [`common`]     — serving on loopback, the request log and the fault knobs
//! - [`launch`]     — both simulators together, the seeded sample org, `simulate`
//! - [`browser`]    — a scripted browser for the connect flow (demo and benchmark)
//! - [`wire`]       — small wire facts (record-id checksums, grant names) of their own

pub mod browser;
pub mod common;
pub mod lark;
pub mod launch;
pub mod salesforce;
pub mod wire;

pub use common::{Faults, RecordedRequest, RequestLog};
pub use launch::run_simulate;

/// Consumer key of the simulated Salesforce connected app.
pub const SF_CLIENT_ID: &str = "3MVG9sim.lark-vc-bridge.client";
/// Consumer secret of the simulated Salesforce connected app.
pub const SF_CLIENT_SECRET: &str = "sim-sf-client-secret-0123456789";
/// Record id of the simulated integration user (the one the service logs in as).
pub const SF_INTEGRATION_USER_ID: &str = "005000000000001AAA";
/// Record id of the simulated human user whose edits the tests and demo make.
pub const SF_HUMAN_USER_ID: &str = "005000000000002AAA";
/// Org id of the simulated org.
pub const SF_ORG_ID: &str = "00D000000000001EAA";
/// App id of the simulated Lark app.
pub const LARK_APP_ID: &str = "cli_a1b2c3d4e5f6sim";
/// App secret of the simulated Lark app.
pub const LARK_APP_SECRET: &str = "sim-lark-app-secret-0123456789";

/// The `LVB__*` environment that points the service at these simulators, with fresh keys
/// (design §2.2 names the keys). Tests, `demo` and the benchmark load settings from it;
/// the benchmark hands it to a child `run` process.
pub fn service_env(
    sf_login_url: &str,
    lark_base_url: &str,
    store_path: &std::path::Path,
) -> Vec<(String, String)> {
    [
        ("LVB__SERVER__BIND", "127.0.0.1:0".to_string()),
        ("LVB__SERVER__PUBLIC_URL", "http://127.0.0.1:0".to_string()),
        ("LVB__SALESFORCE__LOGIN_URL", sf_login_url.to_string()),
        ("LVB__SALESFORCE__CLIENT_ID", SF_CLIENT_ID.to_string()),
        (
            "LVB__SALESFORCE__CLIENT_SECRET",
            SF_CLIENT_SECRET.to_string(),
        ),
        ("LVB__LARK__BASE_URL", lark_base_url.to_string()),
        ("LVB__LARK__ACCOUNTS_URL", lark_base_url.to_string()),
        ("LVB__LARK__APP_ID", LARK_APP_ID.to_string()),
        ("LVB__LARK__APP_SECRET", LARK_APP_SECRET.to_string()),
        ("LVB__SECURITY__ENCRYPTION_KEY", wire::random_hex(32)),
        ("LVB__SECURITY__STATE_SECRET", wire::random_hex(32)),
        ("LVB__STORE__PATH", store_path.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
pub(crate) mod test_support;
