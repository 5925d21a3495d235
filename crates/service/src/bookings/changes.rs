//! Which bookings a change event is about (design §3 rules 2 and 8): the ids it names,
//! parsed once here; a sweep for wildcards and overflow; nothing for other objects and
//! for the service's own writes. Pure.

use crate::config::SalesforceSettings;
use crate::ids::BookingId;
use crate::salesforce::events::{ChangeEvent, ChangeKind};

/// Fields Salesforce changes on every write; a change of only these and our output
/// fields is our own.
const SYSTEM_FIELDS: [&str; 3] = ["LastModifiedDate", "SystemModstamp", "LastModifiedById"];

/// The booking ids an event's work is about (parsed here, once), or why it has none.
/// `own_user` is the integration user's id (a change it committed is our own write).
pub fn event_work(
    settings: &SalesforceSettings,
    ev: &ChangeEvent,
    own_user: Option<&str>,
) -> EventWork {
    let booking = &settings.booking;
    if settings.streaming.is_platform_event() {
        return EventWork::edited(&ev.record_ids);
    }
    if !ev.entity.is_empty() && ev.entity != booking.object {
        return EventWork::Skip("other_object");
    }
    // A wildcard id ("a0B*") stands for many records: only a sweep covers it.
    if ev.record_ids.iter().any(|id| id.contains('*')) {
        return EventWork::Sweep;
    }
    match ev.kind {
        ChangeKind::GapOverflow => return EventWork::Sweep,
        ChangeKind::GapCreate
        | ChangeKind::GapUpdate
        | ChangeKind::GapDelete
        | ChangeKind::GapUndelete => return EventWork::ids(&ev.record_ids),
        _ => {}
    }
    if own_user.is_some() && ev.commit_user.as_deref() == own_user {
        return EventWork::Skip("own_write");
    }
    if ev.kind == ChangeKind::Update && !ev.changed_fields.is_empty() {
        let outputs = booking.output_fields();
        let only_outputs = ev.changed_fields.iter().all(|f| {
            outputs.iter().any(|o| o.eq_ignore_ascii_case(f))
                || SYSTEM_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(f))
        });
        if only_outputs {
            return EventWork::Skip("output_fields_only");
        }
    }
    EventWork::edited(&ev.record_ids)
}

/// What an event asks of the pipeline.
pub enum EventWork {
    /// Read these bookings fresh and bring them in step (a gap event: who changed them is
    /// not known).
    Ids(Vec<BookingId>),
    /// As `Ids`, changed by someone other than the service: a `Failed` one is re-armed
    /// (rule 26).
    Edited(Vec<BookingId>),
    /// Only a sweep covers it (a wildcard id, an overflow).
    Sweep,
    /// Nothing to do, and why (the `reason` label of skipped events).
    Skip(&'static str),
}

impl EventWork {
    fn edited(record_ids: &[String]) -> EventWork {
        match EventWork::ids(record_ids) {
            EventWork::Ids(ids) => EventWork::Edited(ids),
            other => other,
        }
    }

    fn ids(record_ids: &[String]) -> EventWork {
        EventWork::Ids(
            record_ids
                .iter()
                .filter_map(|id| match BookingId::parse(id) {
                    Ok(id) => Some(id),
                    Err(_) => {
                        tracing::warn!(id = %id, "ignoring an invalid record id from the stream");
                        None
                    }
                })
                .collect(),
        )
    }
}
