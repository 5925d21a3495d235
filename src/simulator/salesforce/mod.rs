//! Salesforce simulator (design §5). Filled in by the Salesforce simulator work.

pub mod cometd;
