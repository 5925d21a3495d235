//! The one integration-test binary: each module drives the real app or its parts over
//! real HTTP on loopback against the built-in simulators.

mod alerts;
mod app_hosted;
mod attendance;
mod bookings;
mod bounds;
mod calendar;
mod cli;
mod exactly_once;
mod helpers;
mod lifecycle;
mod long_connection;
mod metadata;
mod oauth;
mod ops;
mod oversized;
mod readme;
mod reliability;
mod server_waits;
mod simulate;
mod store_files;
mod streaming;
mod token_writes;
mod tokens;
mod vault;
