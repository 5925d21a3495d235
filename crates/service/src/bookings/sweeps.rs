//! Sweeps: the bounded reconciliation of upcoming bookings (hourly, after a replay gap,
//! at a start without a usable checkpoint), and re-deciding a trainer's bookings when they
//! connect or disconnect. Free functions over the engine: they choose which bookings to
//! look at; the engine brings them in step.

use std::collections::HashSet;

use chrono::Utc;

use super::engine::Engine;
use super::outcome::{PipelineError, Summary};
use super::reader::TrainerBookings;
use super::watch::{after_sweep, census};
use crate::ids::BookingId;
use crate::tokens::TrainerEvent;

/// Applies in doubt are remembered this long (Lark keeps a reservation at most 30 days).
const IN_DOUBT_KEPT: chrono::Duration = chrono::Duration::days(31);
/// Journalled reservations are kept this long past their end.
const RESERVATIONS_KEPT: chrono::Duration = chrono::Duration::days(2);

/// One bounded, batched sweep of upcoming bookings whose meeting state may be missing or
/// stale.
pub async fn reconcile(engine: &Engine) -> Result<Summary, PipelineError> {
    let now = Utc::now();
    let store = engine.store();
    let bookings = engine.reader().upcoming(now).await?;
    // Bookings with a journalled reservation that the live query did not return may
    // have been deleted while events could not be replayed: read them with queryAll.
    let seen: HashSet<&BookingId> = bookings.iter().map(|b| &b.id).collect();
    store.prune_reservations(now - RESERVATIONS_KEPT)?;
    // A meeting an apply in doubt may have made lapses within Lark's 30 days.
    store.prune_in_doubt(now - IN_DOUBT_KEPT)?;
    engine.app_host().prune(now)?;
    // Rule 25: what hosts owe — dropped once ended, made where they are connected now.
    // A host whose deletions cannot be made now holds up no booking (rule 14): the sweep
    // logs it and goes on.
    engine.owed().sweep(now).await?;
    let vanished: Vec<BookingId> = store
        .reservation_booking_ids()?
        .into_iter()
        .filter(|id| !seen.contains(id))
        .collect();
    engine.progress().add_total(bookings.len() + vanished.len());
    let taken = census(engine.settings(), &bookings, now);
    let mut summary = engine.process(bookings).await?;
    if !vanished.is_empty() {
        summary.add(&engine.process_ids(&vanished).await?);
    }
    // Gauges, and alerts for bookings near their start still without a meeting.
    after_sweep(engine, taken).await;
    tracing::info!(?summary, "reconciliation sweep done");
    Ok(summary)
}

/// A trainer connected: their pending bookings get meetings now. Disconnected: their
/// upcoming bookings are re-decided (those needing Lark become pending).
#[tracing::instrument(skip_all, fields(trainer = %event.trainer()))]
pub async fn on_trainer_event(
    engine: &Engine,
    event: &TrainerEvent,
) -> Result<Summary, PipelineError> {
    // Rule 25: a host who reconnects first gets the deletions they owe made.
    if let TrainerEvent::Connected(id) = event {
        if let Some(record) = engine.hosts().record(id).await? {
            let made = engine.owed().settle_for(&record).await?;
            if made > 0 {
                tracing::info!(
                    made,
                    "owed deletions made now that the trainer is connected"
                );
            }
        }
    }
    let which = match event {
        // With the calendar on, a (re)connect also puts meetings that already exist on
        // the trainer's calendar (a trainer who lacked the calendar scopes until now);
        // those already on it decide `Nothing` and cost no Lark call.
        TrainerEvent::Connected(_) if engine.settings().calendar.enabled => {
            TrainerBookings::PendingOrMeeting
        }
        TrainerEvent::Connected(_) => TrainerBookings::Pending,
        TrainerEvent::Disconnected(_) => TrainerBookings::All,
    };
    let bookings = engine.reader().of_trainer(event.trainer(), which).await?;
    let summary = engine.process(bookings).await?;
    tracing::info!(?summary, "processed the trainer's bookings");
    Ok(summary)
}
