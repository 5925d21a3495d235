//! Reading bookings: every SOQL the pipeline sends about bookings, in one place — by id
//! (with `queryAll`, so deleted rows come back), the upcoming ones a sweep looks at, and
//! a trainer's upcoming ones — each reading the booking with its trainer in one query.
//! The [`BookingReader`] also owns the one describe of the booking object that says which
//! template fields exist.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::model::{select_fields, Booking, MeetingStatus};
use super::outcome::PipelineError;
use crate::config::Settings;
use crate::ids::{BookingId, TrainerId};
use crate::salesforce::soql::{self, quote, RecordId};
use crate::salesforce::SalesforceClient;
use crate::tokens::trainer::TrainerRecord;

/// Most ids in one query's `IN (...)` list ([`BookingReader::ids_per_query`] says how many
/// fit the URI).
pub const MAX_IDS_PER_QUERY: usize = 250;
/// Bytes the encoded `q=` of a by-id query may take. Salesforce refuses a REST call whose
/// URI and headers together pass 16,384 bytes (414 or 431; Salesforce Help article
/// 000386264, "Maximum number of rows returned by SOQL queries over the REST API"). This
/// leaves over 4 KB for the instance URL, the path and our headers (under 1 KB).
const QUERY_PARAM_BUDGET: usize = 12_000;
/// One id in the list, as sent: quoted, comma after.
const LISTED_ID: &str = "'a0B000000000001EAA',";
/// Most bookings one sweep (or one trainer's re-decision) looks at.
pub const SWEEP_LIMIT: usize = 10_000;
/// Sweeps look this far ahead (bookings further out are renewed as they come closer).
const SWEEP_HORIZON_DAYS: i64 = 366;

/// The by-id query: the bookings (with their trainers) named in `ids`.
fn by_ids_soql(fields: &str, object: &str, ids: &[RecordId]) -> String {
    format!(
        "SELECT {fields} FROM {object} WHERE Id IN {}",
        soql::id_list(ids)
    )
}

/// How many ids a by-id query whose text without ids is `base` takes within the budget.
fn ids_fitting(base: &str) -> usize {
    let room = QUERY_PARAM_BUDGET.saturating_sub(encoded_len(base));
    (room / encoded_len(LISTED_ID)).clamp(1, MAX_IDS_PER_QUERY)
}

/// Bytes `text` takes as a query-string value (form-encoded, as the client sends it).
fn encoded_len(text: &str) -> usize {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .map(str::len)
        .sum()
}

/// Which of a trainer's upcoming bookings to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainerBookings {
    /// All of them (the trainer was disconnected).
    All,
    /// Those waiting for the trainer to connect (the trainer just connected).
    Pending,
    /// Those waiting, and those whose meeting exists: with the calendar on, a (re)connect
    /// puts meetings made while the trainer lacked the calendar scopes on their calendar.
    /// New bookings (no status yet) stay with the stream, which times their first link.
    PendingOrMeeting,
}

/// The template fields of the booking object: those that exist (read with every booking),
/// and the topic template's that do not (a booking whose topic cannot be rendered fails).
#[derive(Debug, Clone, Default)]
pub struct TemplateFields {
    pub present: Vec<String>,
    pub missing_topic: Vec<String>,
}

/// Reads bookings fresh from Salesforce; cheap to clone.
#[derive(Clone)]
pub struct BookingReader {
    settings: Arc<Settings>,
    salesforce: SalesforceClient,
    fields: Arc<OnceCell<TemplateFields>>,
}

/// The booking fields the calendar reads besides the topic's (rule 20).
fn calendar_fields(settings: &crate::config::Settings) -> Vec<String> {
    let c = &settings.calendar;
    if !c.enabled {
        return vec![];
    }
    let b = &settings.salesforce.booking;
    let mut fields = c.description_fields();
    fields.push(b.calendar_event_field.clone());
    fields.extend(b.attendee_email_field.clone());
    fields
}

impl BookingReader {
    /// Reads with `salesforce` the booking object `settings` names.
    pub fn new(settings: Arc<Settings>, salesforce: SalesforceClient) -> BookingReader {
        BookingReader {
            settings,
            salesforce,
            fields: Arc::new(OnceCell::new()),
        }
    }

    /// The extra booking fields read, from one describe: the topic template's and — with
    /// the calendar on — the description template's, the event field and the guest's email
    /// field. Only topic fields count as missing; the others are read when they exist.
    pub async fn template_fields(&self) -> Result<&TemplateFields, PipelineError> {
        self.fields
            .get_or_try_init(|| async {
                let b = &self.settings.salesforce.booking;
                let topic = b.topic_fields();
                let mut wanted = topic.clone();
                wanted.extend(calendar_fields(&self.settings));
                let mut seen = std::collections::HashSet::new();
                wanted.retain(|f| seen.insert(f.to_ascii_lowercase()));
                if wanted.is_empty() {
                    return Ok(TemplateFields::default());
                }
                let describe = self.salesforce.describe(&b.object).await.map_err(|source| {
                    PipelineError::Describe {
                        object: b.object.clone(),
                        source,
                    }
                })?;
                let (present, absent): (Vec<String>, Vec<String>) = wanted
                    .into_iter()
                    .partition(|f| describe.field(f).is_some());
                let (missing, other): (Vec<String>, Vec<String>) =
                    absent.into_iter().partition(|f| topic.contains(f));
                if !other.is_empty() {
                    tracing::error!(?other, object = %b.object, "calendar fields that do not exist are left out");
                }
                if !missing.is_empty() {
                    tracing::error!(?missing, object = %b.object, "topic_template names fields that do not exist");
                }
                Ok(TemplateFields {
                    present,
                    missing_topic: missing,
                })
            })
            .await
    }

    async fn select_list(&self) -> Result<String, PipelineError> {
        let fields = self.template_fields().await?;
        Ok(select_fields(
            &self.settings.salesforce.booking,
            &self.settings.salesforce.trainer,
            &fields.present,
        ))
    }

    /// How many ids one by-id query takes: as many as keep its URI inside Salesforce's
    /// limit with the fields this configuration reads, up to [`MAX_IDS_PER_QUERY`]. Fewer
    /// queries in a burst; each is a Salesforce API call.
    pub async fn ids_per_query(&self) -> Result<usize, PipelineError> {
        let fields = self.select_list().await?;
        Ok(ids_fitting(&by_ids_soql(
            &fields,
            &self.settings.salesforce.booking.object,
            &[],
        )))
    }

    /// The given bookings as they are now; an id Salesforce no longer returns at all
    /// (purged) comes back as a deleted booking.
    pub async fn by_ids(&self, ids: &[BookingId]) -> Result<Vec<Booking>, PipelineError> {
        let fields = self.select_list().await?;
        let object = &self.settings.salesforce.booking.object;
        let per_query = ids_fitting(&by_ids_soql(&fields, object, &[]));
        let mut bookings = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(per_query) {
            let chunk: Vec<RecordId> = chunk.iter().map(|id| id.record_id().clone()).collect();
            let soql = by_ids_soql(&fields, object, &chunk);
            // Parsed query by query: one query's rows are held at a time.
            let rows = self.salesforce.query_all(&soql).await?;
            bookings.extend(self.parse_rows(&rows).await?);
        }
        let found: std::collections::HashSet<BookingId> =
            bookings.iter().map(|b| b.id.clone()).collect();
        for id in ids.iter().filter(|id| !found.contains(*id)) {
            bookings.push(Booking::purged(id.clone()));
        }
        Ok(bookings)
    }

    /// Remote (or reserved) bookings ending between `now` and the sweep horizon.
    pub async fn upcoming(&self, now: DateTime<Utc>) -> Result<Vec<Booking>, PipelineError> {
        let b = &self.settings.salesforce.booking;
        let fields = self.select_list().await?;
        let horizon = now + chrono::Duration::days(SWEEP_HORIZON_DAYS);
        let remote: Vec<String> = b.remote_values.iter().map(|v| quote(v)).collect();
        let soql = format!(
            "SELECT {fields} FROM {obj} WHERE {end} > {now} AND {end} < {horizon} AND ({svc} IN ({remote}) OR {res} != null) ORDER BY {end} LIMIT {SWEEP_LIMIT}",
            obj = b.object,
            end = b.end_field,
            now = soql::datetime(now),
            horizon = soql::datetime(horizon),
            svc = b.service_type_field,
            remote = remote.join(", "),
            res = b.reservation_field,
        );
        let rows = self.salesforce.query(&soql).await?;
        self.parse_rows(&rows).await
    }

    /// A trainer's bookings that have not ended yet.
    pub async fn of_trainer(
        &self,
        trainer: &TrainerId,
        which: TrainerBookings,
    ) -> Result<Vec<Booking>, PipelineError> {
        let b = &self.settings.salesforce.booking;
        let fields = self.select_list().await?;
        let extra = match which {
            TrainerBookings::All => String::new(),
            TrainerBookings::Pending => format!(
                " AND {} = {}",
                b.meeting_status_field,
                quote(MeetingStatus::PendingTrainerConnection.as_str())
            ),
            TrainerBookings::PendingOrMeeting => format!(
                " AND {} IN ({}, {}, {})",
                b.meeting_status_field,
                quote(MeetingStatus::PendingTrainerConnection.as_str()),
                quote(MeetingStatus::Created.as_str()),
                quote(MeetingStatus::CreatedByApp.as_str())
            ),
        };
        let soql = format!(
            "SELECT {fields} FROM {obj} WHERE {tf} = {tid} AND {end} > {now}{extra} LIMIT {SWEEP_LIMIT}",
            obj = b.object,
            tf = b.trainer_field,
            tid = quote(trainer.as_str()),
            end = b.end_field,
            now = soql::datetime(Utc::now()),
        );
        let rows = self.salesforce.query(&soql).await?;
        self.parse_rows(&rows).await
    }

    async fn parse_rows(&self, rows: &[Map<String, Value>]) -> Result<Vec<Booking>, PipelineError> {
        let fields = self.template_fields().await?;
        let b = &self.settings.salesforce.booking;
        let t = &self.settings.salesforce.trainer;
        let mut bookings: Vec<Booking> = rows
            .iter()
            .filter_map(|r| Booking::from_row(b, t, &fields.present, r))
            .collect();
        share_trainers(&mut bookings);
        Ok(bookings)
    }
}

/// Makes the bookings that name the same trainer, read alike, share one record. Each
/// record carries the trainer's encrypted tokens, and a burst holds two queries' worth of
/// bookings of far fewer trainers: one copy per booking was the largest single item at
/// the heap's peak (issue 22, heaptrack: 2.1 of 12.6 MiB).
fn share_trainers(bookings: &mut [Booking]) {
    let mut seen: HashMap<TrainerId, Arc<TrainerRecord>> = HashMap::new();
    for trainer in bookings.iter_mut().filter_map(|b| b.trainer.as_mut()) {
        match seen.get(&trainer.id) {
            Some(first) if first == trainer => *trainer = Arc::clone(first),
            Some(_) => {}
            None => {
                seen.insert(trainer.id.clone(), Arc::clone(trainer));
            }
        }
    }
}

#[cfg(test)]
mod tests;
