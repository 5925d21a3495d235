//! Bookings → Lark meetings. `model` reads a booking, `decide` is the pure decision,
//! `act` carries decisions out (Lark calls, write-back), `processor` turns stream events
//! into coalesced, ordered work and owns the replay checkpoint, `reconcile` sweeps.

pub mod act;
pub mod decide;
pub mod model;
pub mod processor;

pub use model::{Booking, MeetingStatus};
pub use processor::{Engine, Processor, ProcessorHandle};
