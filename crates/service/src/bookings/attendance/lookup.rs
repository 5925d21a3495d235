//! Asking Lark what happened in a booking's meeting (rule 29): one meeting with its
//! participants (`meetings/:id?with_participants=true`), and the session's meetings by
//! its meeting number (`meetings/list_by_no`, then each one's participants).
//!
//! The app's tenant token goes first (app permission `vc:meeting:readonly`, so trainers
//! connected before attendance existed need not reconnect for a new scope). Only where
//! Lark refuses the app (121005) is the host's user token tried — which works only if the
//! trainer's grant includes the *user* scope `vc:meeting:readonly`, not in the default
//! `lark.scopes` (the README says so).

use chrono::{DateTime, Utc};

use crate::bookings::host_token::{HostToken, HostTokens};
use crate::lark::meetings::MAX_LIST_WINDOW;
use crate::lark::{LarkClient, LarkError, MeetingAuth, MeetingBrief, MeetingDetail};
use crate::store::AttendanceEntry;
use crate::tokens::TokenService;

/// Most meetings of one session read at the post-end lookup (a reservation's meeting
/// restarted a few times at most; each costs a call).
pub const MAX_SESSION_MEETINGS: usize = 5;

/// Why Lark could not say.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Lark refused the app (121005), and the host's token was not there or refused too.
    #[error("Lark does not let the app see the meeting (121005), and the host's token could not be used: {0}")]
    NoPermission(String),
    /// Lark answered an error, or could not be reached.
    #[error(transparent)]
    Lark(#[from] LarkError),
}

impl LookupError {
    /// True when trying again later may help (Lark down, rate limited, a timeout).
    pub fn is_transient(&self) -> bool {
        match self {
            LookupError::NoPermission(_) => false,
            LookupError::Lark(e) => !matches!(
                e,
                LarkError::PermissionDenied { .. }
                    | LarkError::InvalidParams { .. }
                    | LarkError::NotFound { .. }
            ),
        }
    }
}

/// Lark's meetings calls for attendance; cheap to clone.
#[derive(Clone)]
pub struct MeetingLookup {
    lark: LarkClient,
    hosts: HostTokens,
    tokens: TokenService,
}

impl MeetingLookup {
    /// Calls with `lark`; the host's token from `tokens` where the app is refused.
    pub fn new(lark: LarkClient, tokens: TokenService) -> MeetingLookup {
        MeetingLookup {
            hosts: HostTokens::new(lark.clone(), tokens.clone()),
            lark,
            tokens,
        }
    }

    /// One meeting and its participants.
    pub async fn meeting(
        &self,
        entry: &AttendanceEntry,
        meeting_id: &str,
    ) -> Result<MeetingDetail, LookupError> {
        match self.lark.meeting(MeetingAuth::App, meeting_id).await {
            Err(e) if e.is_vc_no_permission() => {
                tracing::info!(
                    "Lark refused the app the meeting (121005); asking with the host's token"
                );
                self.as_host(entry, |lark, token| async move {
                    lark.meeting(MeetingAuth::User(&token), meeting_id).await
                })
                .await
            }
            other => Ok(other?),
        }
    }

    /// The session's meetings, with their participants: those under the row's meeting
    /// number that started between `from` and `to` (at most 90 days apart), up to
    /// [`MAX_SESSION_MEETINGS`].
    pub async fn session(
        &self,
        entry: &AttendanceEntry,
        meeting_no: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MeetingDetail>, LookupError> {
        let from = from.max(to - MAX_LIST_WINDOW);
        let briefs: Vec<MeetingBrief> = match self
            .lark
            .meetings_by_no(MeetingAuth::App, meeting_no, from, to)
            .await
        {
            Err(e) if e.is_vc_no_permission() => {
                self.as_host(entry, |lark, token| async move {
                    lark.meetings_by_no(MeetingAuth::User(&token), meeting_no, from, to)
                        .await
                })
                .await?
            }
            other => other?,
        };
        let mut meetings = Vec::new();
        for brief in briefs.iter().rev().take(MAX_SESSION_MEETINGS) {
            meetings.push(self.meeting(entry, &brief.id).await?);
        }
        Ok(meetings)
    }

    /// A call with the host's user token (refreshed once if Lark says it is invalid).
    async fn as_host<T, F, Fut>(&self, entry: &AttendanceEntry, call: F) -> Result<T, LookupError>
    where
        F: Fn(LarkClient, crate::tokens::AccessToken) -> Fut,
        Fut: std::future::Future<Output = Result<T, LarkError>>,
    {
        let Some(trainer_id) = &entry.trainer_id else {
            return Err(LookupError::NoPermission(
                "the meeting's host is not known".into(),
            ));
        };
        let record = match self.tokens.trainers().get(trainer_id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                return Err(LookupError::NoPermission(format!(
                    "the host {trainer_id} no longer exists"
                )))
            }
            Err(e) => {
                return Err(LookupError::NoPermission(format!(
                    "the host's record could not be read: {e}"
                )))
            }
        };
        let token = match self.hosts.token(&record).await {
            Ok(HostToken::Token(t)) => t,
            Ok(HostToken::NotConnected) => {
                return Err(LookupError::NoPermission(
                    "the host has not connected Lark".into(),
                ))
            }
            Err(e) => return Err(LookupError::NoPermission(e.to_string())),
        };
        match self.hosts.with_token_retry(&record, token, call).await {
            Ok(v) => Ok(v),
            Err(e @ (LarkError::PermissionDenied { .. } | LarkError::InvalidParams { .. })) => {
                Err(LookupError::NoPermission(e.to_string()))
            }
            Err(e) => Err(LookupError::Lark(e)),
        }
    }
}
