//! The session on the host's Lark calendar (design §3 rule 20): [`plan`] decides, purely,
//! which event a booking's meeting should have and what that means for the journalled one;
//! [`primary`] keeps each host's primary-calendar id (one lookup per trainer);
//! [`step`] carries it out with the host's user token after the meeting step, folding the
//! event id (and, while only the calendar failed, the reason) into the booking's
//! write-back. A calendar failure never costs the meeting: the status stays, and the step
//! is retried on the booking's own backoff (a calendar retry, never `Failed`).

pub mod plan;
pub mod primary;
pub mod step;

pub use plan::{plan_event, wanted_event, EventPlan, WantedEvent};
pub use primary::PrimaryCalendars;
pub use step::{CalendarDone, CalendarStep, MISSING_USER_SCOPE};
