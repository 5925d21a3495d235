//! VC meetings (what happened in a reserved meeting, rule 29): one meeting with its
//! participants, and the meetings held under one meeting number.
//!
//! - `GET /open-apis/vc/v1/meetings/:meeting_id?with_participants=true&user_id_type=open_id`
//!   (获取会议详情): only meetings that belong to the caller, within the last 90 days;
//!   121005 when the caller may not see it. Either the app's tenant token (app permission
//!   `vc:meeting:readonly`) or the owner's user token. A caller that gets
//!   [`LarkError::PermissionDenied`] with code 121005 as the app falls back to the host's
//!   token (rule 29); [`LarkError::is_vc_no_permission`] says so.
//! - `GET /open-apis/vc/v1/meetings/list_by_no?meeting_no=&start_time=&end_time=`
//!   (获取与会议号关联的会议列表): the meetings of one number in a window of at most 90
//!   days, `page_size` ≤ 50, paged with `page_token`/`has_more`; 100 calls a minute.
//!
//! Shapes from the Feishu docs (wxkingstar/doc-hub-mcp, `feishu/003-服务端API/视频会议/
//! 会议管理/`); both take 1000/min and 50/s except `list_by_no`. Times are unix seconds as
//! strings; the meeting password is never kept.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::{lenient_i64, LarkError};
use super::events::UserType;
use super::pacing::{Limit, Pacer};
use super::secret::AccessToken;
use super::{CallKind, Data, LarkClient, Sensitivity};

/// Prefix of one meeting's path (`{MEETINGS_PATH}/{meeting_id}`).
pub const MEETINGS_PATH: &str = "/open-apis/vc/v1/meetings";
/// The meetings of one meeting number.
pub const LIST_BY_NO_PATH: &str = "/open-apis/vc/v1/meetings/list_by_no";
/// Widest window `list_by_no` takes.
pub const MAX_LIST_WINDOW: chrono::Duration = chrono::Duration::days(90);
/// Largest `page_size` of `list_by_no`.
pub const LIST_PAGE_SIZE: u32 = 50;
/// Most pages read from one `list_by_no` (one meeting number is one booking's: a handful
/// of meetings at most; the cap keeps a misbehaving answer from paging forever).
pub const MAX_LIST_PAGES: usize = 20;

/// Lark's limit on `list_by_no`: 100 a minute per app.
const LIST_BY_NO_PER_MINUTE: usize = 100;

/// One pacer per method (each is limited on its own).
pub(crate) struct Pacers {
    get: Pacer,
    list_by_no: Pacer,
}

impl Default for Pacers {
    fn default() -> Self {
        Pacers {
            get: Pacer::at_standard_limits(),
            list_by_no: Pacer::new(&[Limit {
                max: LIST_BY_NO_PER_MINUTE,
                window: Duration::from_secs(60),
            }]),
        }
    }
}

/// Whose token a meetings call uses.
#[derive(Clone, Copy)]
pub enum MeetingAuth<'a> {
    /// The app's tenant token (app permission `vc:meeting:readonly`).
    App,
    /// A user's token: the meeting's owner (its host, for our reservations).
    User(&'a AccessToken),
}

/// A meeting, with its participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingDetail {
    pub id: String,
    pub meeting_no: Option<String>,
    pub topic: Option<String>,
    pub url: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub status: Option<MeetingState>,
    /// The host's open_id.
    pub host_id: Option<String>,
    /// People who took part, counted once each (`participant_count_accumulated`).
    pub participant_count_accumulated: Option<u32>,
    pub participants: Vec<Participant>,
}

/// `status` of a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingState {
    /// 1: calling.
    Calling,
    /// 2: in progress.
    InProgress,
    /// 3: ended.
    Ended,
    /// A value the docs do not list.
    Other(i64),
}

/// One participant of a meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The open_id (for Lark users; other kinds of participant have their own ids).
    pub id: String,
    pub first_join_time: Option<DateTime<Utc>>,
    pub final_leave_time: Option<DateTime<Utc>>,
    /// Time spent in the meeting, all stays together.
    pub in_meeting_duration: Option<Duration>,
    pub user_type: Option<UserType>,
    pub is_host: bool,
    pub is_cohost: bool,
    /// From another tenant (a merchant).
    pub is_external: bool,
    pub status: Option<ParticipantState>,
}

/// `status` of a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantState {
    /// 1: being called.
    Calling,
    /// 2: in the meeting.
    InMeeting,
    /// 3: ringing.
    Ringing,
    /// 4: not in the meeting, or left.
    Left,
    /// A value the docs do not list.
    Other(i64),
}

/// One meeting held under a meeting number (`meeting_briefs[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingBrief {
    pub id: String,
    pub meeting_no: Option<String>,
    pub topic: Option<String>,
    pub url: Option<String>,
}

impl LarkClient {
    /// One meeting and its participants (`with_participants=true`, ids as open_ids).
    /// The app may be refused a meeting ([`LarkError::is_vc_no_permission`]): then ask
    /// again with its owner's token.
    pub async fn meeting(
        &self,
        auth: MeetingAuth<'_>,
        meeting_id: &str,
    ) -> Result<MeetingDetail, LarkError> {
        let path = meeting_path(meeting_id)?;
        let query = [("with_participants", "true"), ("user_id_type", "open_id")];
        let pacer = &self.inner.meetings_pacers.get;
        let Data { data }: Data<MeetingData> = match auth {
            MeetingAuth::App => {
                self.tenant_call(
                    "lark meeting get (app)",
                    CallKind::MeetingGet,
                    Sensitivity::Plain,
                    Some(pacer),
                    |token| {
                        self.inner
                            .http
                            .get(self.url(&path))
                            .query(&query)
                            .bearer_auth(token)
                    },
                )
                .await?
            }
            MeetingAuth::User(token) => {
                self.paced_user_call("lark meeting get", CallKind::MeetingGet, pacer, || {
                    self.inner
                        .http
                        .get(self.url(&path))
                        .query(&query)
                        .bearer_auth(token.secret())
                })
                .await?
            }
        };
        Ok(data.meeting.into_detail())
    }

    /// The meetings held under `meeting_no` between `from` and `to` (at most
    /// [`MAX_LIST_WINDOW`] apart), every page read (up to [`MAX_LIST_PAGES`]).
    pub async fn meetings_by_no(
        &self,
        auth: MeetingAuth<'_>,
        meeting_no: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MeetingBrief>, LarkError> {
        let invalid = |msg: String| LarkError::InvalidParams { code: 0, msg };
        if meeting_no.is_empty()
            || meeting_no.len() > 32
            || !meeting_no.chars().all(|c| c.is_ascii_digit())
        {
            return Err(invalid(format!(
                "not a meeting number: {:?}",
                super::error::truncate(meeting_no)
            )));
        }
        if to < from || to - from > MAX_LIST_WINDOW {
            return Err(invalid(format!(
                "list_by_no takes a window of at most 90 days, got {from} to {to}"
            )));
        }
        let (start, end) = (from.timestamp().to_string(), to.timestamp().to_string());
        let page_size = LIST_PAGE_SIZE.to_string();
        let pacer = &self.inner.meetings_pacers.list_by_no;
        let mut briefs = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![
                ("meeting_no", meeting_no),
                ("start_time", start.as_str()),
                ("end_time", end.as_str()),
                ("page_size", page_size.as_str()),
            ];
            if let Some(token) = &page_token {
                query.push(("page_token", token.as_str()));
            }
            let request = |bearer: &str| {
                self.inner
                    .http
                    .get(self.url(LIST_BY_NO_PATH))
                    .query(&query)
                    .bearer_auth(bearer)
            };
            let Data { data }: Data<ListData> = match auth {
                MeetingAuth::App => {
                    self.tenant_call(
                        "lark meetings by number (app)",
                        CallKind::MeetingsByNo,
                        Sensitivity::Plain,
                        Some(pacer),
                        request,
                    )
                    .await?
                }
                MeetingAuth::User(token) => {
                    self.paced_user_call(
                        "lark meetings by number",
                        CallKind::MeetingsByNo,
                        pacer,
                        || request(token.secret()),
                    )
                    .await?
                }
            };
            briefs.extend(
                data.meeting_briefs
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(RawBrief::into_brief),
            );
            page_token = data.page_token.filter(|t| !t.is_empty());
            if !data.has_more || page_token.is_none() {
                return Ok(briefs);
            }
        }
        tracing::warn!(
            meeting_no,
            pages = MAX_LIST_PAGES,
            "list_by_no still had more pages; the rest is left unread"
        );
        Ok(briefs)
    }
}

/// `/open-apis/vc/v1/meetings/{id}`, refusing ids that would change the path (meeting ids
/// are 19 digits; one read from an event or the store is not trusted blindly).
fn meeting_path(meeting_id: &str) -> Result<String, LarkError> {
    let valid = !meeting_id.is_empty()
        && meeting_id.len() <= 32
        && meeting_id.chars().all(|c| c.is_ascii_digit());
    if !valid {
        return Err(LarkError::InvalidParams {
            code: 0,
            msg: format!("not a meeting id: {:?}", super::error::truncate(meeting_id)),
        });
    }
    Ok(format!("{MEETINGS_PATH}/{meeting_id}"))
}

#[derive(Deserialize)]
struct MeetingData {
    meeting: RawMeeting,
}

#[derive(Deserialize)]
struct RawMeeting {
    #[serde(default)]
    id: String,
    #[serde(default)]
    meeting_no: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    start_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    end_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    status: Option<i64>,
    #[serde(default)]
    host_user: Option<RawUser>,
    #[serde(default, deserialize_with = "lenient_i64")]
    participant_count_accumulated: Option<i64>,
    #[serde(default)]
    participants: Option<Vec<RawParticipant>>,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawParticipant {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    first_join_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    final_leave_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    in_meeting_duration: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    user_type: Option<i64>,
    #[serde(default)]
    is_host: bool,
    #[serde(default)]
    is_cohost: bool,
    #[serde(default)]
    is_external: bool,
    #[serde(default, deserialize_with = "lenient_i64")]
    status: Option<i64>,
}

#[derive(Deserialize)]
struct ListData {
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    meeting_briefs: Option<Vec<RawBrief>>,
}

#[derive(Deserialize)]
struct RawBrief {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    meeting_no: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// Unix seconds as a time; absurd values (zero, negative, out of range) are none.
fn time(seconds: Option<i64>) -> Option<DateTime<Utc>> {
    seconds
        .filter(|s| *s > 0)
        .and_then(|s| DateTime::from_timestamp(s, 0))
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

impl RawMeeting {
    fn into_detail(self) -> MeetingDetail {
        MeetingDetail {
            id: self.id,
            meeting_no: non_empty(self.meeting_no),
            topic: non_empty(self.topic),
            url: non_empty(self.url),
            start_time: time(self.start_time),
            end_time: time(self.end_time),
            status: self.status.map(|s| match s {
                1 => MeetingState::Calling,
                2 => MeetingState::InProgress,
                3 => MeetingState::Ended,
                other => MeetingState::Other(other),
            }),
            host_id: non_empty(self.host_user.and_then(|u| u.id)),
            participant_count_accumulated: self
                .participant_count_accumulated
                .and_then(|n| u32::try_from(n).ok()),
            participants: self
                .participants
                .unwrap_or_default()
                .into_iter()
                .filter_map(RawParticipant::into_participant)
                .collect(),
        }
    }
}

impl RawParticipant {
    fn into_participant(self) -> Option<Participant> {
        Some(Participant {
            id: non_empty(self.id)?,
            first_join_time: time(self.first_join_time),
            final_leave_time: time(self.final_leave_time),
            in_meeting_duration: self
                .in_meeting_duration
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
            user_type: self.user_type.map(UserType::from_code),
            is_host: self.is_host,
            is_cohost: self.is_cohost,
            is_external: self.is_external,
            status: self.status.map(|s| match s {
                1 => ParticipantState::Calling,
                2 => ParticipantState::InMeeting,
                3 => ParticipantState::Ringing,
                4 => ParticipantState::Left,
                other => ParticipantState::Other(other),
            }),
        })
    }
}

impl RawBrief {
    fn into_brief(self) -> Option<MeetingBrief> {
        Some(MeetingBrief {
            id: non_empty(self.id)?,
            meeting_no: non_empty(self.meeting_no),
            topic: non_empty(self.topic),
            url: non_empty(self.url),
        })
    }
}

#[cfg(test)]
mod tests;
