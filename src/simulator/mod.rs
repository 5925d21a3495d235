//! Built-in simulators of Salesforce and Lark: faithful, stateful, in-process fakes of
//! both sides' wire formats (design §4–§5), served over real HTTP on loopback. Used by
//! `demo`, `simulate` and the tests; a third-party client pointed at them must work
//! unchanged. Every request is recorded ([`RequestLog`]) so tests can count calls, and
//! [`Faults`] injects errors and latency.
//!
//! Nothing here is used by the service's production path.

pub mod browser;
pub mod common;
pub mod lark;
pub mod launch;
pub mod salesforce;

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
