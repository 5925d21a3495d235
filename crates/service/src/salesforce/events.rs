//! Typed Streaming API events: turns one Bayeux event message — a Change Data Capture event
//! (`/data/...`) or a platform event (`/event/X__e`) — into a [`ChangeEvent`] that says
//! *which* records changed and how, or into a [`MalformedEvent`] that says why not.
//!
//! Parsing is pure (no I/O, no clock) and never panics: bad input from the wire becomes an
//! error value carrying the replay id when it could be read, so the stream can log it and
//! move on (design §3 rule 10). This module decides nothing about bookings: field values in
//! the payload are ignored, because the processor always reads the record fresh (rule 3).
//!
//! Message shapes: see `fixtures/cdc/README.md` (recorded CDC events from the EMP Connector
//! README; gap and overflow events from the Change Data Capture Developer Guide).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The "empty" record id an overflow event carries in `recordIds` (Change Data Capture
/// Developer Guide, "Overflow Events": "always set to 000000000000000AAA").
pub const EMPTY_RECORD_ID: &str = "000000000000000AAA";

/// What happened, as in `ChangeEventHeader.changeType`. Platform events count as
/// [`ChangeKind::Update`]: they only name the booking to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// `CREATE`
    Create,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
    /// `UNDELETE`
    Undelete,
    /// `GAP_CREATE`: a create Salesforce could not describe; read the record.
    GapCreate,
    /// `GAP_UPDATE`
    GapUpdate,
    /// `GAP_DELETE`
    GapDelete,
    /// `GAP_UNDELETE`
    GapUndelete,
    /// `GAP_OVERFLOW`: a transaction too large to describe; no record ids, sweep.
    GapOverflow,
}

impl ChangeKind {
    /// Parses a `changeType` value; `None` for anything else (`SNAPSHOT` is reserved).
    pub fn parse(change_type: &str) -> Option<ChangeKind> {
        Some(match change_type {
            "CREATE" => ChangeKind::Create,
            "UPDATE" => ChangeKind::Update,
            "DELETE" => ChangeKind::Delete,
            "UNDELETE" => ChangeKind::Undelete,
            "GAP_CREATE" => ChangeKind::GapCreate,
            "GAP_UPDATE" => ChangeKind::GapUpdate,
            "GAP_DELETE" => ChangeKind::GapDelete,
            "GAP_UNDELETE" => ChangeKind::GapUndelete,
            "GAP_OVERFLOW" => ChangeKind::GapOverflow,
            _ => return None,
        })
    }

    /// The `changeType` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "CREATE",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
            ChangeKind::Undelete => "UNDELETE",
            ChangeKind::GapCreate => "GAP_CREATE",
            ChangeKind::GapUpdate => "GAP_UPDATE",
            ChangeKind::GapDelete => "GAP_DELETE",
            ChangeKind::GapUndelete => "GAP_UNDELETE",
            ChangeKind::GapOverflow => "GAP_OVERFLOW",
        }
    }

    /// True for gap and overflow events: the header says which records (if any), but
    /// `changedFields` and `commitUser` cannot be trusted to describe the change.
    pub fn is_gap(self) -> bool {
        matches!(
            self,
            ChangeKind::GapCreate
                | ChangeKind::GapUpdate
                | ChangeKind::GapDelete
                | ChangeKind::GapUndelete
                | ChangeKind::GapOverflow
        )
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event from the stream, reduced to what the processor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Position in the channel's stream; the checkpoint saved once the work is done.
    pub replay_id: i64,
    /// The channel it arrived on, e.g. `/data/Training_Booking__ChangeEvent`.
    pub channel: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Object API name (`Training_Booking__c`), or the platform event's name (`X__e`).
    pub entity: String,
    /// The changed records, as sent (usually one; several for a merged change). Empty for
    /// an overflow event. Not validated here: a field-type conversion can send a wildcard
    /// such as `a0B*`, which `RecordId::parse` rejects.
    pub record_ids: Vec<String>,
    /// `commitUser`: who made the change (None when absent or empty).
    pub commit_user: Option<String>,
    /// `changedFields`, as sent: field names, including `LastModifiedDate` on updates
    /// and compound paths such as `Name.FirstName` for some standard objects.
    pub changed_fields: Vec<String>,
    /// `commitTimestamp` (sent as milliseconds since the epoch).
    pub commit_timestamp: Option<DateTime<Utc>>,
    /// `transactionKey` (CDC) or `EventUuid` (platform event).
    pub transaction_key: Option<String>,
    /// `sequenceNumber` within the transaction.
    pub sequence_number: Option<i64>,
}

/// An event that could not be understood. Logged with its replay id and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed event (replay id {}): {reason}", .replay_id.map_or("unknown".to_string(), |r| r.to_string()))]
pub struct MalformedEvent {
    /// The replay id, when `data.event.replayId` could be read.
    pub replay_id: Option<i64>,
    /// What was wrong.
    pub reason: String,
}

/// Parses one Bayeux event message (`{"channel": ..., "data": {...}}`).
///
/// `booking_id_field` names the platform event field holding the booking id
/// (`salesforce.streaming.booking_id_field`); CDC events ignore it.
pub fn parse_event(message: &Value, booking_id_field: &str) -> Result<ChangeEvent, MalformedEvent> {
    let replay_id = message
        .pointer("/data/event/replayId")
        .and_then(Value::as_i64)
        // An event's replay id is positive (-1 and -2 only mean "new" and "all" when
        // subscribing): anything else is refused as malformed, never stored or counted
        // from (design §3 rule 17).
        .filter(|r| *r > 0);
    let malformed = |reason: String| MalformedEvent { replay_id, reason };

    let channel = message
        .get("channel")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no channel".into()))?;
    let replay_id = replay_id.ok_or_else(|| {
        malformed(match message.pointer("/data/event/replayId") {
            None => "no data.event.replayId".into(),
            Some(other) => format!("data.event.replayId is not a positive integer: {other}"),
        })
    })?;
    let payload = message
        .pointer("/data/payload")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("no data.payload object".into()))?;

    if let Some(event_name) = channel.strip_prefix("/event/") {
        parse_platform_event(
            channel,
            event_name,
            replay_id,
            message,
            payload,
            booking_id_field,
        )
        .map_err(malformed)
    } else if channel.starts_with("/data/") {
        parse_change_event(channel, replay_id, payload).map_err(malformed)
    } else {
        Err(malformed(format!("unsupported channel {channel}")))
    }
}

/// Reads one Bayeux message from the wire keeping only what [`parse_event`] looks at — the
/// channel, `data.event`, and of `data.payload` the `ChangeEventHeader` and the platform
/// event fields (`booking_id_field`, `CreatedById`, `CreatedDate`) — and skipping the
/// rest unread. A change event's payload carries every changed field of the record, and
/// the service's own write-backs come back as change events too: read whole into a
/// [`Value`], each field's name and value was an allocation thrown away at once. What is
/// kept reads exactly as [`serde_json::from_slice`] would read it, so [`parse_event`]
/// gives the same answer for either; a message that is not JSON is the same error.
pub fn read_event_message(bytes: &[u8], booking_id_field: &str) -> serde_json::Result<Value> {
    let payload = [
        ("ChangeEventHeader", Keep::Whole),
        ("CreatedById", Keep::Whole),
        ("CreatedDate", Keep::Whole),
        (booking_id_field, Keep::Whole),
    ];
    let data = [("event", Keep::Whole), ("payload", Keep::Fields(&payload))];
    let message = [("channel", Keep::Whole), ("data", Keep::Fields(&data))];
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde::de::DeserializeSeed::deserialize(&Keep::Fields(&message), &mut de)?;
    de.end()?;
    Ok(value)
}

/// What to keep of a JSON value: all of it, or of an object only the named fields (each
/// with what to keep of it). Anything but an object is kept whole.
enum Keep<'k> {
    Whole,
    Fields(&'k [(&'k str, Keep<'k>)]),
}

impl<'de> serde::de::DeserializeSeed<'de> for &Keep<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Keep::Whole => serde::Deserialize::deserialize(d),
            Keep::Fields(fields) => d.deserialize_any(Pick(fields)),
        }
    }
}

/// Reads a value, keeping only the named fields when it is an object.
struct Pick<'k>(&'k [(&'k str, Keep<'k>)]);

impl<'de> serde::de::Visitor<'de> for Pick<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(Key(key)) = map.next_key()? {
            match self.0.iter().find(|(name, _)| *name == key) {
                // The last of repeated keys wins, as in `Value`.
                Some((name, keep)) => {
                    kept.insert((*name).to_string(), map.next_value_seed(keep)?);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// An object key, borrowed from the message unless it had escapes to undo.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

fn parse_change_event(
    channel: &str,
    replay_id: i64,
    payload: &Map<String, Value>,
) -> Result<ChangeEvent, String> {
    let header = payload
        .get("ChangeEventHeader")
        .and_then(Value::as_object)
        .ok_or("no ChangeEventHeader")?;
    let change_type = header
        .get("changeType")
        .and_then(Value::as_str)
        .ok_or("no changeType")?;
    let kind = ChangeKind::parse(change_type)
        .ok_or_else(|| format!("unknown changeType {change_type}"))?;
    let entity = non_empty_str(header.get("entityName")).ok_or("no entityName")?;
    let mut record_ids = string_list(header.get("recordIds"), "recordIds")?;
    // An overflow event names no record: its recordIds holds the empty id.
    record_ids.retain(|id| id != EMPTY_RECORD_ID);
    if record_ids.is_empty() && kind != ChangeKind::GapOverflow {
        return Err(format!("{kind} event without recordIds"));
    }
    Ok(ChangeEvent {
        replay_id,
        channel: channel.to_string(),
        kind,
        entity,
        record_ids,
        commit_user: non_empty_str(header.get("commitUser")),
        changed_fields: match header.get("changedFields") {
            None | Some(Value::Null) => Vec::new(),
            some => string_list(some, "changedFields")?,
        },
        commit_timestamp: header
            .get("commitTimestamp")
            .and_then(Value::as_i64)
            .and_then(DateTime::from_timestamp_millis),
        transaction_key: non_empty_str(header.get("transactionKey")),
        sequence_number: header.get("sequenceNumber").and_then(Value::as_i64),
    })
}

fn parse_platform_event(
    channel: &str,
    event_name: &str,
    replay_id: i64,
    message: &Value,
    payload: &Map<String, Value>,
    booking_id_field: &str,
) -> Result<ChangeEvent, String> {
    let booking_id = non_empty_str(payload.get(booking_id_field))
        .ok_or_else(|| format!("platform event without {booking_id_field}"))?;
    Ok(ChangeEvent {
        replay_id,
        channel: channel.to_string(),
        kind: ChangeKind::Update,
        entity: event_name.to_string(),
        record_ids: vec![booking_id],
        commit_user: non_empty_str(payload.get("CreatedById")),
        changed_fields: Vec::new(),
        commit_timestamp: payload
            .get("CreatedDate")
            .and_then(Value::as_str)
            .and_then(super::values::parse_datetime),
        transaction_key: non_empty_str(message.pointer("/data/event/EventUuid")),
        sequence_number: None,
    })
}

fn non_empty_str(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn string_list(value: Option<&Value>, name: &str) -> Result<Vec<String>, String> {
    let items = value
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{name} is not a list"))?;
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{name} holds a non-string: {v}"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
