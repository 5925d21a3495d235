//! Typed record ids of the two objects the service works on. Each is a validated
//! [`RecordId`] (so it is safe in SOQL and URLs) that also says *which* record it names:
//! a booking id cannot be passed where a trainer id is meant. Ids are parsed once, where
//! they enter (a query row, a stream event, the journal), and carried typed from there.

use std::fmt;

use crate::salesforce::soql::{InvalidRecordId, RecordId};

macro_rules! record_id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Debug)]
        pub struct $name(RecordId);

        impl $name {
            /// Parses and validates an id (15 or 18 characters, checksum checked).
            pub fn parse(s: &str) -> Result<$name, InvalidRecordId> {
                RecordId::parse(s).map($name)
            }

            /// The 18-character id.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The validated record id, for the Salesforce client.
            pub fn record_id(&self) -> &RecordId {
                &self.0
            }
        }

        impl From<RecordId> for $name {
            fn from(id: RecordId) -> $name {
                $name(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

record_id_newtype!(
    /// A booking (`salesforce.booking.object`) record id.
    BookingId
);
record_id_newtype!(
    /// A trainer (`salesforce.trainer.object`) record id.
    TrainerId
);

#[cfg(test)]
mod tests;
