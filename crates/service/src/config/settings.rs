//! The typed settings the rest of the service reads: every value parsed and checked once
//! by [`super::validate`], so readers never re-parse or `expect` a key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

use crate::ids::{ReplayId, TrainerId};

/// Validated settings of the whole service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub salesforce: SalesforceSettings,
    pub lark: LarkSettings,
    pub security: SecuritySettings,
    pub refresh: RefreshSettings,
    pub processing: ProcessingSettings,
    pub calendar: CalendarSettings,
    pub meetings: MeetingsSettings,
    pub alerts: AlertsSettings,
    pub attendance: AttendanceSettings,
    /// Advice about a valid but unusual combination of keys, one sentence each, for the
    /// start-up log and `check` (validation accepts these; they are not errors).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Listen address, e.g. `127.0.0.1:8080` (port 0 = any free port).
    pub bind: SocketAddr,
    /// External base URL, without a trailing slash.
    pub public_url: Url,
    /// Whole-request limit, reading the headers included (`server.request_timeout`).
    pub request_timeout: Duration,
    /// OAuth requests one client address may make per minute (`server.rate_limit_per_minute`).
    pub rate_limit_per_minute: u32,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

impl ServerSettings {
    /// `{public_url}/oauth/lark/callback`, the redirect URI registered in the Lark app.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/oauth/lark/callback",
            self.public_url.as_str().trim_end_matches('/')
        )
    }

    /// The connect link a trainer clicks.
    pub fn connect_link(&self, trainer: &TrainerId) -> String {
        format!(
            "{}/oauth/lark/start?trainer={trainer}",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub path: PathBuf,
}

/// Salesforce login flow, without its credentials (for messages: `check` names the flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesforceAuthFlow {
    ClientCredentials,
    JwtBearer,
    Password,
}

/// The configured Salesforce login flow with the credentials it needs, each one present
/// (validation refused the configuration otherwise).
#[derive(Debug, Clone)]
pub enum SalesforceAuth {
    /// OAuth 2.0 client credentials: the connected app's Run As user.
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
    /// OAuth 2.0 JWT bearer (RFC 7523): an assertion signed with the key whose
    /// certificate is on the connected app.
    JwtBearer {
        client_id: String,
        username: String,
        private_key_path: PathBuf,
    },
    /// OAuth 2.0 username-password; `password` is the password with the security token
    /// appended, as Salesforce expects it.
    Password {
        client_id: String,
        client_secret: SecretString,
        username: String,
        password: SecretString,
    },
}

impl SalesforceAuth {
    /// Which flow this is.
    pub fn flow(&self) -> SalesforceAuthFlow {
        match self {
            SalesforceAuth::ClientCredentials { .. } => SalesforceAuthFlow::ClientCredentials,
            SalesforceAuth::JwtBearer { .. } => SalesforceAuthFlow::JwtBearer,
            SalesforceAuth::Password { .. } => SalesforceAuthFlow::Password,
        }
    }

    /// The connected app's consumer key (every flow has one).
    pub fn client_id(&self) -> &str {
        match self {
            SalesforceAuth::ClientCredentials { client_id, .. }
            | SalesforceAuth::JwtBearer { client_id, .. }
            | SalesforceAuth::Password { client_id, .. } => client_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SalesforceSettings {
    pub login_url: Url,
    /// e.g. `62.0`.
    pub api_version: String,
    /// The login flow and its credentials.
    pub auth: SalesforceAuth,
    pub streaming: StreamingSettings,
    pub booking: BookingSettings,
    pub trainer: TrainerSettings,
}

/// Where a subscription starts when no checkpoint exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// `-1`: only new events.
    Latest,
    /// `-2`: every retained event.
    Earliest,
}

impl ReplayFrom {
    /// The subscription position this stands for.
    pub fn position(self) -> ReplayId {
        match self {
            ReplayFrom::Latest => ReplayId::Latest,
            ReplayFrom::Earliest => ReplayId::Earliest,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamingSettings {
    pub channel: String,
    pub replay_from: ReplayFrom,
    /// Platform event channels only: the field with the booking id.
    pub booking_id_field: String,
}

impl StreamingSettings {
    /// True for a `/event/X__e` platform event channel, false for CDC (`/data/...`).
    pub fn is_platform_event(&self) -> bool {
        self.channel.starts_with("/event/")
    }
}

#[derive(Debug, Clone)]
pub struct BookingSettings {
    pub object: String,
    pub trainer_field: String,
    pub start_field: String,
    pub end_field: String,
    pub service_type_field: String,
    pub remote_values: Vec<String>,
    pub status_field: String,
    pub cancelled_values: Vec<String>,
    pub topic_template: String,
    pub link_field: String,
    pub reservation_field: String,
    pub meeting_status_field: String,
    pub meeting_error_field: String,
    /// Booking field with the guest's (merchant's) email, invited to the calendar event;
    /// None = no guest (`salesforce.booking.attendee_email_field` empty).
    pub attendee_email_field: Option<String>,
    /// Written: the calendar event id (rule 20).
    pub calendar_event_field: String,
    /// Written: the session status, one of [`SESSION_STATUSES`] (rule 29;
    /// `salesforce.booking.session_status_field`).
    pub session_status_field: String,
}

/// The values the service writes to the session status field (design §2.4, rule 29).
pub const SESSION_STATUSES: [&str; 3] = ["In Progress", "Completed", "No Show"];

impl BookingSettings {
    // The attendance fields of design §2.4 other than the session status: fixed names,
    // shipped in `salesforce-metadata/`, not configuration keys.

    /// Written (DateTime): when the meeting started (`meeting_started_v1`, rule 29).
    pub const SESSION_STARTED_AT_FIELD: &'static str = "Lark_Session_Started_At__c";
    /// Written (DateTime): when the meeting ended (`meeting_ended_v1`).
    pub const SESSION_ENDED_AT_FIELD: &'static str = "Lark_Session_Ended_At__c";
    /// Written (DateTime): the host's first join.
    pub const TRAINER_JOINED_AT_FIELD: &'static str = "Lark_Trainer_Joined_At__c";
    /// Written (Number 4,0): distinct people who joined.
    pub const PARTICIPANTS_FIELD: &'static str = "Lark_Participants__c";
    /// Written (Checkbox): someone other than the host joined.
    pub const GUEST_JOINED_FIELD: &'static str = "Lark_Guest_Joined__c";
    /// Written (URL): the recording, from `recording_ready_v1`.
    pub const RECORDING_URL_FIELD: &'static str = "Lark_Recording_Url__c";

    /// The six fixed attendance fields, in the order of design §2.4.
    pub const FIXED_ATTENDANCE_FIELDS: [&'static str; 6] = [
        Self::SESSION_STARTED_AT_FIELD,
        Self::SESSION_ENDED_AT_FIELD,
        Self::TRAINER_JOINED_AT_FIELD,
        Self::PARTICIPANTS_FIELD,
        Self::GUEST_JOINED_FIELD,
        Self::RECORDING_URL_FIELD,
    ];

    /// Every attendance field the service writes (rule 29): the session status field, then
    /// the six fixed ones.
    pub fn attendance_fields(&self) -> [&str; 7] {
        let [a, b, c, d, e, f] = Self::FIXED_ATTENDANCE_FIELDS;
        [&self.session_status_field, a, b, c, d, e, f]
    }

    /// The `{Field__c}` placeholders of the topic template, in order.
    pub fn topic_fields(&self) -> Vec<String> {
        template_fields(&self.topic_template)
    }

    /// Fields the service writes on the booking; a change touching only these is our own
    /// (rule 2): the meeting's, the calendar event's and the attendance fields.
    pub fn output_fields(&self) -> [&str; 12] {
        let [s, a, b, c, d, e, f] = self.attendance_fields();
        [
            &self.link_field,
            &self.reservation_field,
            &self.meeting_status_field,
            &self.meeting_error_field,
            &self.calendar_event_field,
            s,
            a,
            b,
            c,
            d,
            e,
            f,
        ]
    }
}

/// `{Field__c}` placeholders of a template.
pub fn template_fields(template: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = after[..close].trim();
                if !name.is_empty() && !fields.iter().any(|f| f == name) {
                    fields.push(name.to_string());
                }
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    fields
}

#[derive(Debug, Clone)]
pub struct TrainerSettings {
    pub object: String,
    pub email_field: String,
    pub name_field: String,
}

/// Which Lark user-token endpoints to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthVersion {
    /// `/open-apis/authen/v2/oauth/token`.
    V2,
    /// `/open-apis/authen/v1/oidc/*`.
    V1,
}

#[derive(Debug, Clone)]
pub struct LarkSettings {
    pub base_url: Url,
    pub accounts_url: Url,
    pub app_id: String,
    pub app_secret: SecretString,
    pub oauth_version: OAuthVersion,
    pub scopes: Vec<String>,
    pub notify_trainers: bool,
    /// When set, only Lark accounts of this tenant may connect (`lark.tenant_key`).
    pub tenant_key: Option<String>,
    /// How Lark events reach the service (`lark.events`, rule 28).
    pub events: LarkEvents,
}

/// How Lark events (the VC meeting events of rule 29) reach the service (`lark.events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LarkEvents {
    /// One WebSocket per app, opened by `run` (`long_connection`): no public URL needed.
    LongConnection,
    /// No events (`off`): attendance, when enabled, comes from the sweep alone.
    Off,
}

/// The user-token scopes the calendar needs: writing events on the primary calendar and
/// reading which calendar is primary (Lark's calendar v4 pages: `calendar:calendar` for
/// events, `calendar:calendar:readonly` for `calendars/primary`).
pub const CALENDAR_SCOPES: [&str; 2] = ["calendar:calendar", "calendar:calendar:readonly"];

impl Settings {
    /// Scopes a trainer's consent must include for the connection to be saved (rule 19):
    /// the calendar ones too when `calendar.enabled`.
    pub fn required_scopes(&self) -> Vec<&'static str> {
        let mut scopes = vec!["vc:reserve", "offline_access"];
        if self.calendar.enabled {
            scopes.extend(CALENDAR_SCOPES);
        }
        scopes
    }

    /// The scopes the consent page asks for: `lark.scopes`, without the calendar ones
    /// when `calendar.enabled` is false.
    pub fn requested_scopes(&self) -> Vec<String> {
        self.lark
            .scopes
            .iter()
            .filter(|s| self.calendar.enabled || !CALENDAR_SCOPES.contains(&s.as_str()))
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// The AES-256 key tokens are encrypted with.
    pub encryption_key: EncryptionKey,
    /// Older keys still accepted for decryption (rotation).
    pub previous_keys: Vec<EncryptionKey>,
    pub state_secret: SecretString,
    pub require_email_match: bool,
}

/// A 32-byte AES-256 key, parsed once from its 64 hex characters. Redacted in `Debug` and
/// zeroized on drop (secrecy's `SecretBox`).
pub struct EncryptionKey(SecretBox<[u8; 32]>);

impl EncryptionKey {
    /// Parses 64 hex characters (surrounding whitespace ignored); `None` otherwise.
    pub fn from_hex(text: &str) -> Option<EncryptionKey> {
        let mut key = Box::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut key[..]).ok()?;
        Some(EncryptionKey(SecretBox::new(key)))
    }

    /// The key bytes, for the cipher.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl Clone for EncryptionKey {
    fn clone(&self) -> Self {
        EncryptionKey(SecretBox::new(Box::new(*self.0.expose_secret())))
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

#[derive(Debug, Clone)]
pub struct RefreshSettings {
    pub interval: Duration,
    pub refresh_token_window: Duration,
    pub access_token_skew: Duration,
}

#[derive(Debug, Clone)]
pub struct ProcessingSettings {
    pub concurrency: usize,
    /// Attempts at one booking's failing work before it is `Failed` (rule 14).
    pub max_attempts: u32,
    /// Cap of one booking's retry backoff.
    pub retry_max_delay: Duration,
    /// Applies whose answer was lost, per booking, before it is `Failed` (rule 13).
    pub max_in_doubt_applies: u32,
    /// Wait before re-applying after an apply whose answer was lost.
    pub in_doubt_delay: Duration,
    /// On SIGTERM, how long in-flight work may finish before it is cancelled (rule 24).
    pub shutdown_timeout: Duration,
}

/// `calendar.*` (rule 20).
#[derive(Debug, Clone)]
pub struct CalendarSettings {
    /// Put each meeting on the host's primary Lark calendar.
    pub enabled: bool,
    /// IANA zone the event is written in.
    pub timezone: String,
    /// The event's one reminder, minutes before the start.
    pub reminder_minutes: u32,
    /// Event description; `{Field__c}` and `{link}` placeholders.
    pub description_template: String,
}

impl CalendarSettings {
    /// The booking fields the description template names (`{link}` is not a field).
    pub fn description_fields(&self) -> Vec<String> {
        template_fields(&self.description_template)
            .into_iter()
            .filter(|f| f != "link")
            .collect()
    }
}

/// What a remote booking whose trainer has not connected gets (`meetings.unconnected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unconnected {
    /// Wait for the trainer: `Pending Trainer Connection`.
    Pending,
    /// The app reserves the meeting on the trainer's behalf (rule 21).
    AppHosted,
}

/// `meetings.*`.
#[derive(Debug, Clone)]
pub struct MeetingsSettings {
    pub unconnected: Unconnected,
    /// `meetings.auto_record`: Lark records the meeting on its own (off unless configured);
    /// [`crate::lark::LarkClient::for_service`] sends it with every new reservation.
    pub auto_record: bool,
}

/// `alerts.*` (rule 22).
#[derive(Debug, Clone)]
pub struct AlertsSettings {
    /// The group chat (`oc_…`) alerts go to; None = alerts off.
    pub lark_chat_id: Option<String>,
    /// Alert when a booking this close to its start still has no meeting.
    pub pending_horizon: Duration,
    /// The host not in the meeting this long after the booking's start → a message to the
    /// trainer and an admin alert (rule 30). None = off: `alerts.no_show_after = "0s"`, or
    /// `lark.events = "off"` (rule 30 reads the host's join event; without events every
    /// host would look absent).
    pub no_show_after: Option<Duration>,
}

/// `attendance.*` (rule 29).
#[derive(Debug, Clone)]
pub struct AttendanceSettings {
    /// Write what happened in each meeting back to its booking.
    pub enabled: bool,
    /// After a booking's scheduled end, how long to wait for the meeting's end before
    /// asking Lark (the sweep that finds missed events).
    pub grace: Duration,
}
