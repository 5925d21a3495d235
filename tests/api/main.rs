//! The one integration-test binary: each module drives the real app or its parts over
//! real HTTP on loopback against the built-in simulators.

mod bookings;
mod cli;
mod helpers;
mod metadata;
mod oauth;
mod ops;
mod readme;
mod streaming;
mod tokens;
mod vault;
