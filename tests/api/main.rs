//! The one integration-test binary: each module drives the real app or its parts over
//! real HTTP on loopback against the built-in simulators.

mod cli;
mod helpers;
mod metadata;
mod oauth;
mod tokens;
mod readme;
mod vault;
mod bookings;
mod streaming;
