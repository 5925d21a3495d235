//! Reserving a new meeting: the one Lark call that is not idempotent. An apply whose
//! answer was lost is journalled as in doubt, re-applied only after
//! `processing.in_doubt_delay` and at most `processing.max_in_doubt_applies` times in all,
//! then the booking is `Failed` without a link (design §3 rule 13).

use chrono::Utc;

use super::act::{Actor, TokenOutcome};
use super::model::{Booking, MeetingStatus};
use super::outcome::PipelineError;
use super::writeback::WriteBack;
use crate::config::Unconnected;
use crate::lark::{ApplyError, LarkError};
use crate::metrics::names;
use crate::tokens::trainer::{clip, TrainerRecord};

impl Actor<'_> {
    /// Reserves a meeting hosted by `trainer`. An apply whose answer was lost is journalled
    /// as in doubt and re-applied only after `processing.in_doubt_delay`, at most
    /// `processing.max_in_doubt_applies` applies in all (rule 13).
    pub(super) async fn create(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
        end_time: i64,
        topic: &str,
    ) -> Result<Option<WriteBack>, PipelineError> {
        let key = booking.id.as_str();
        let max_applies = self.processing.max_in_doubt_applies;
        let delay_ms = self.processing.in_doubt_delay.as_millis() as i64;
        if let Some(doubt) = self.store.in_doubt_apply(key)? {
            if doubt.applies >= max_applies {
                return Ok(self.unconfirmed(booking, doubt.applies));
            }
            let retry_at = doubt.last_at + delay_ms;
            if Utc::now().timestamp_millis() < retry_at {
                return Err(PipelineError::ApplyInDoubt {
                    booking: booking.id.clone(),
                    applies: doubt.applies,
                    retry_at,
                });
            }
        }
        let token = match self.token(trainer).await? {
            TokenOutcome::Token(t) => t,
            TokenOutcome::NotConnected => {
                self.remind(booking).await;
                if self.meetings.unconnected == Unconnected::AppHosted {
                    return self.create_by_app(booking, trainer, end_time, topic).await;
                }
                return Ok(self.pending(booking));
            }
        };
        let topic_owned = topic.to_string();
        let result = self
            .with_token_retry(trainer, token, |lark, t| {
                let topic = topic_owned.clone();
                async move { lark.apply_reserve(&t, end_time, &topic).await }
            })
            .await;
        match result {
            Ok(reserve) => {
                self.journal(
                    booking,
                    &trainer.id,
                    &reserve.id,
                    &reserve.url,
                    end_time,
                    topic,
                )?;
                self.store.clear_in_doubt(key)?;
                self.metrics.inc(names::MEETINGS, &[("action", "created")]);
                self.metrics
                    .inc(names::MEETINGS_BY_HOST, &[("host", "trainer")]);
                tracing::info!(booking = %booking.id, trainer = %trainer.id, reservation = %reserve.id, "meeting reserved");
                Ok(Some(self.created(&booking.id, &reserve.id, &reserve.url)))
            }
            Err(ApplyError::AnswerLost(source)) => self.answer_lost(booking, trainer, &source),
            Err(ApplyError::Failed(e)) => self.lark_failure(booking, e),
        }
    }

    /// An apply (with the trainer's token or the app's) whose answer was lost: journalled
    /// as in doubt; the booking waits out `processing.in_doubt_delay`, or is `Failed`
    /// after the last allowed apply.
    pub(super) fn answer_lost(
        &self,
        booking: &Booking,
        trainer: &TrainerRecord,
        source: &LarkError,
    ) -> Result<Option<WriteBack>, PipelineError> {
        let key = booking.id.as_str();
        let max_applies = self.processing.max_in_doubt_applies;
        let delay_ms = self.processing.in_doubt_delay.as_millis() as i64;
        // Journalled before anything else: a restart must not forget it.
        let now = Utc::now().timestamp_millis();
        let applies = self.store.record_in_doubt_apply(key, &trainer.id, now)?;
        self.metrics
            .inc(names::FAILURES, &[("kind", "apply_answer_lost")]);
        tracing::warn!(booking = %booking.id, trainer = %trainer.id, applies, error = %source, "the answer to a reserve apply was lost; a meeting may exist in Lark");
        if applies >= max_applies {
            return Ok(self.unconfirmed(booking, applies));
        }
        Err(PipelineError::ApplyInDoubt {
            booking: booking.id.clone(),
            applies,
            retry_at: now + delay_ms,
        })
    }

    /// `Failed` after the last apply in doubt: no link is shown, since none could be
    /// confirmed, and the reason sends the admin to the trainer's Lark.
    fn unconfirmed(&self, booking: &Booking, applies: u32) -> Option<WriteBack> {
        let reason = clip(&format!(
            "The answer to {applies} meeting reservation requests was lost, so a meeting may exist unconfirmed in the trainer's Lark. Check their Lark meetings; no link is shown because none could be confirmed."
        ));
        if booking.link.is_none() && booking.reservation_id.is_none() {
            if booking.shows_status(MeetingStatus::Failed, Some(&reason)) {
                return None;
            }
        } else {
            tracing::warn!(booking = %booking.id, "clearing a link that could not be confirmed");
        }
        self.metrics
            .inc(names::FAILURES, &[("kind", "apply_in_doubt")]);
        tracing::error!(booking = %booking.id, applies, "booking failed: reserve applies in doubt");
        Some(self.meeting_write(&booking.id, None, MeetingStatus::Failed, Some(&reason)))
    }
}
