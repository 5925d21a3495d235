//! Validation: the raw layer turned into typed [`Settings`], every missing or invalid key
//! collected into one [`ConfigError`]. No message ever contains a secret's value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::raw::{BoolLike, Raw, RawSalesforce, SecretList, StringList};
use super::*;

/// Collects problems while turning raw values into typed ones.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn required(&mut self, key: &str, value: Option<String>) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => {
                self.0.push(format!("{key} is missing"));
                String::new()
            }
        }
    }

    fn url(&mut self, key: &str, value: Option<String>) -> Url {
        let text = self.required(key, value);
        match Url::parse(&text) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => u,
            _ => {
                if !text.is_empty() {
                    self.0
                        .push(format!("{key} must be an http(s) URL, got {text:?}"));
                }
                Url::parse("http://invalid.invalid").expect("static url")
            }
        }
    }

    fn duration(&mut self, key: &str, value: Option<String>) -> Duration {
        let text = self.required(key, value);
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                if !text.is_empty() {
                    self.0.push(format!(
                        "{key} must be a positive duration like \"15m\" or \"48h\", got {text:?}"
                    ));
                }
                Duration::from_secs(1)
            }
        }
    }

    /// A duration that may be zero (`"0s"` turns a feature off).
    fn duration_or_zero(&mut self, key: &str, value: Option<String>) -> Duration {
        let text = self.required(key, value);
        match humantime::parse_duration(&text) {
            Ok(d) => d,
            Err(_) => {
                if !text.is_empty() {
                    self.0.push(format!(
                        "{key} must be a duration like \"10m\", or \"0s\" for off, got {text:?}"
                    ));
                }
                Duration::ZERO
            }
        }
    }

    /// A whole number from 1 to 1000 (attempts, applies).
    fn count(&mut self, key: &str, value: Option<String>) -> u32 {
        let text = self.required(key, value);
        match text.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                if !text.is_empty() {
                    self.0.push(format!(
                        "{key} must be a whole number from 1 to 1000, got {text:?}"
                    ));
                }
                1
            }
        }
    }

    fn boolean(&mut self, key: &str, value: Option<BoolLike>, default: bool) -> bool {
        match value {
            None => default,
            Some(BoolLike::Bool(b)) => b,
            Some(BoolLike::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    self.0
                        .push(format!("{key} must be true or false, got {t:?}"));
                    default
                }
            },
        }
    }

    /// An API name such as `Training_Booking__c`; SOQL is built from these, so they are
    /// checked strictly.
    fn api_name(&mut self, key: &str, value: Option<String>) -> String {
        let name = self.required(key, value);
        if !name.is_empty() && !is_api_name(&name) {
            self.0.push(format!(
                "{key} must be a Salesforce API name (letters, digits, underscores), got {name:?}"
            ));
        }
        name
    }

    fn secret_key_hex(&mut self, key: &str, value: Option<&SecretString>) -> Option<EncryptionKey> {
        let v = value.map(|s| s.expose_secret().trim()).unwrap_or_default();
        if v.is_empty() {
            self.0.push(format!("{key} is missing"));
            return None;
        }
        let parsed = (v.len() == 64)
            .then(|| EncryptionKey::from_hex(v))
            .flatten();
        if parsed.is_none() {
            // Never echo the value: only its length.
            self.0.push(format!(
                "{key} must be 64 hex characters (a 32-byte AES-256 key); the value given has {} characters{}",
                v.len(),
                if v.chars().all(|c| c.is_ascii_hexdigit()) { "" } else { " and is not all hex" }
            ));
        }
        parsed
    }

    /// A secret that must be present and not blank.
    fn secret(
        &mut self,
        key: &str,
        value: Option<SecretString>,
        needed_by: &str,
    ) -> Option<SecretString> {
        match value {
            Some(v) if !v.expose_secret().trim().is_empty() => Some(v),
            _ => {
                self.0.push(format!("{key} is missing{needed_by}"));
                None
            }
        }
    }
}

/// A Salesforce API name: starts with a letter; letters, digits and underscores.
/// An IANA zone name as Lark takes it (`UTC`, `Asia/Singapore`, `America/Argentina/Salta`,
/// `Etc/GMT+8`): letters, digits and `_ + -`, in `/`-separated parts. Whether the zone
/// exists is Lark's to say; this catches typos such as spaces or an offset like `+08:00`.
fn is_zone_name(name: &str) -> bool {
    name.len() <= 64
        && name.split('/').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-'))
        })
}

/// An optional field name: empty or absent = None.
fn optional_api_name(p: &mut Problems, key: &str, value: Option<String>) -> Option<String> {
    let name = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())?;
    if !is_api_name(&name) {
        p.0.push(format!("{key} must be a field API name, got {name:?}"));
    }
    Some(name)
}

pub fn is_api_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Raw {
    pub(super) fn validate(self) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();

        let bind_text = p.required("server.bind", self.server.bind);
        let bind = bind_text.parse::<SocketAddr>().ok();
        if !bind_text.is_empty() && bind.is_none() {
            p.0.push(format!(
                "server.bind must be an address like 127.0.0.1:8080, got {bind_text:?}"
            ));
        }
        let public_url = p.url("server.public_url", self.server.public_url);
        let request_timeout = p.duration("server.request_timeout", self.server.request_timeout);
        let rate_text = p.required(
            "server.rate_limit_per_minute",
            self.server.rate_limit_per_minute,
        );
        let rate_limit_per_minute = match rate_text.parse::<u32>() {
            Ok(n) if (1..=100_000).contains(&n) => n,
            _ => {
                if !rate_text.is_empty() {
                    p.0.push(format!(
                        "server.rate_limit_per_minute must be a whole number from 1 to 100000, got {rate_text:?}"
                    ));
                }
                1
            }
        };
        let trust_forwarded_for = p.boolean(
            "server.trust_forwarded_for",
            self.server.trust_forwarded_for,
            false,
        );
        let store_path = PathBuf::from(p.required("store.path", self.store.path));

        let sf = self.salesforce;
        let login_url = p.url("salesforce.login_url", sf.login_url.clone());
        let api_version = p.required("salesforce.api_version", sf.api_version.clone());
        let version_ok = api_version
            .strip_suffix(".0")
            .is_some_and(|major| major.parse::<u32>().is_ok());
        if !api_version.is_empty() && !version_ok {
            p.0.push(format!(
                "salesforce.api_version must look like \"62.0\", got {api_version:?}"
            ));
        }
        let auth = salesforce_auth(&mut p, &sf);
        let present = |s: &Option<SecretString>| {
            s.as_ref()
                .is_some_and(|v| !v.expose_secret().trim().is_empty())
        };

        let channel = p.required("salesforce.streaming.channel", sf.streaming.channel);
        let channel_ok = channel.starts_with("/data/") || channel.starts_with("/event/");
        if !channel.is_empty() && !channel_ok {
            p.0.push(format!(
                "salesforce.streaming.channel must start with /data/ (CDC) or /event/ (platform event), got {channel:?}"
            ));
        }
        let replay_from = match p
            .required("salesforce.streaming.replay_from", sf.streaming.replay_from)
            .as_str()
        {
            "latest" | "-1" | "" => ReplayFrom::Latest,
            "earliest" | "-2" => ReplayFrom::Earliest,
            other => {
                p.0.push(format!(
                    "salesforce.streaming.replay_from must be latest or earliest, got {other:?}"
                ));
                ReplayFrom::Latest
            }
        };
        let booking_id_field = p.api_name(
            "salesforce.streaming.booking_id_field",
            sf.streaming.booking_id_field,
        );

        let b = sf.booking;
        let booking = BookingSettings {
            object: p.api_name("salesforce.booking.object", b.object),
            trainer_field: p.api_name("salesforce.booking.trainer_field", b.trainer_field),
            start_field: p.api_name("salesforce.booking.start_field", b.start_field),
            end_field: p.api_name("salesforce.booking.end_field", b.end_field),
            service_type_field: p.api_name(
                "salesforce.booking.service_type_field",
                b.service_type_field,
            ),
            remote_values: b
                .remote_values
                .map(StringList::into_vec)
                .unwrap_or_default(),
            status_field: p.api_name("salesforce.booking.status_field", b.status_field),
            cancelled_values: b
                .cancelled_values
                .map(StringList::into_vec)
                .unwrap_or_default(),
            topic_template: p.required("salesforce.booking.topic_template", b.topic_template),
            link_field: p.api_name("salesforce.booking.link_field", b.link_field),
            reservation_field: p
                .api_name("salesforce.booking.reservation_field", b.reservation_field),
            meeting_status_field: p.api_name(
                "salesforce.booking.meeting_status_field",
                b.meeting_status_field,
            ),
            meeting_error_field: p.api_name(
                "salesforce.booking.meeting_error_field",
                b.meeting_error_field,
            ),
            attendee_email_field: optional_api_name(
                &mut p,
                "salesforce.booking.attendee_email_field",
                b.attendee_email_field,
            ),
            calendar_event_field: p.api_name(
                "salesforce.booking.calendar_event_field",
                b.calendar_event_field,
            ),
            session_status_field: p.api_name(
                "salesforce.booking.session_status_field",
                b.session_status_field,
            ),
        };
        if booking.remote_values.is_empty() {
            p.0.push("salesforce.booking.remote_values must name at least one value".into());
        }
        for field in booking.topic_fields() {
            if !is_api_name(&field) {
                p.0.push(format!(
                    "salesforce.booking.topic_template has a placeholder {{{field}}} that is not a field API name"
                ));
            }
        }
        let t = sf.trainer;
        let trainer = TrainerSettings {
            object: p.api_name("salesforce.trainer.object", t.object),
            email_field: p.api_name("salesforce.trainer.email_field", t.email_field),
            name_field: p.api_name("salesforce.trainer.name_field", t.name_field),
        };

        let c = self.calendar;
        let calendar = CalendarSettings {
            enabled: p.boolean("calendar.enabled", c.enabled, true),
            timezone: p.required("calendar.timezone", c.timezone),
            reminder_minutes: {
                let text = p.required("calendar.reminder_minutes", c.reminder_minutes);
                match text.parse::<u32>() {
                    // Lark takes reminders up to 20160 minutes (14 days) ahead.
                    Ok(n) if n <= 20_160 => n,
                    _ => {
                        if !text.is_empty() {
                            p.0.push(format!(
                                "calendar.reminder_minutes must be a whole number from 0 to 20160, got {text:?}"
                            ));
                        }
                        15
                    }
                }
            },
            description_template: p
                .required("calendar.description_template", c.description_template),
        };
        if !calendar.timezone.is_empty() && !is_zone_name(&calendar.timezone) {
            p.0.push(format!(
                "calendar.timezone must be an IANA zone name such as UTC or Europe/Paris, got {:?}",
                calendar.timezone
            ));
        }
        for field in calendar.description_fields() {
            if !is_api_name(&field) {
                p.0.push(format!(
                    "calendar.description_template has a placeholder {{{field}}} that is neither {{link}} nor a field API name"
                ));
            }
        }
        let unconnected = match self
            .meetings
            .unconnected
            .as_deref()
            .map(str::trim)
            .unwrap_or("pending")
        {
            "pending" | "" => Unconnected::Pending,
            "app_hosted" => Unconnected::AppHosted,
            other => {
                p.0.push(format!(
                    "meetings.unconnected must be pending or app_hosted, got {other:?}"
                ));
                Unconnected::Pending
            }
        };
        let auto_record = p.boolean("meetings.auto_record", self.meetings.auto_record, false);
        let a = self.alerts;
        let lark_chat_id = a
            .lark_chat_id
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if let Some(chat) = &lark_chat_id {
            if !chat.starts_with("oc_") || !chat[3..].chars().all(|c| c.is_ascii_alphanumeric()) {
                p.0.push(format!(
                    "alerts.lark_chat_id must be a Lark group chat id (oc_ followed by letters and digits), got {chat:?}"
                ));
            }
        }
        let pending_horizon = p.duration("alerts.pending_horizon", a.pending_horizon);
        let no_show_after = p.duration_or_zero("alerts.no_show_after", a.no_show_after);

        let l = self.lark;
        let events = match l.events.as_deref().map(str::trim) {
            Some("long_connection") | None => LarkEvents::LongConnection,
            Some("off") => LarkEvents::Off,
            Some(other) => {
                p.0.push(format!(
                    "lark.events must be long_connection or off, got {other:?}"
                ));
                LarkEvents::LongConnection
            }
        };
        let attendance = AttendanceSettings {
            enabled: p.boolean("attendance.enabled", self.attendance.enabled, true),
            grace: p.duration("attendance.grace", self.attendance.grace),
        };
        let mut notes = Vec::new();
        if events == LarkEvents::Off && attendance.enabled {
            // Allowed: rule 29's sweep finds what the events would have said, only later.
            notes.push(format!(
                "attendance.enabled is on with lark.events = \"off\": attendance is filled by the sweep alone, {} after each booking's end",
                humantime::format_duration(attendance.grace)
            ));
        }
        let no_show_after = match (no_show_after.is_zero(), events) {
            (true, _) => None,
            (false, LarkEvents::LongConnection) => Some(no_show_after),
            (false, LarkEvents::Off) => {
                // Rule 30 reads the host's join event: without events every host would look
                // absent, and every trainer would get the message.
                notes.push(
                    "alerts.no_show_after is ignored with lark.events = \"off\": the no-show alert needs the host's join event".into(),
                );
                None
            }
        };
        let alerts = AlertsSettings {
            lark_chat_id,
            pending_horizon,
            no_show_after,
        };

        let base_url = p.url("lark.base_url", l.base_url);
        let accounts_url = p.url("lark.accounts_url", l.accounts_url);
        let app_id = p.required("lark.app_id", l.app_id);
        if !present(&l.app_secret) {
            p.0.push("lark.app_secret is missing".into());
        }
        let oauth_version = match p.required("lark.oauth_version", l.oauth_version).as_str() {
            "v2" | "" => OAuthVersion::V2,
            "v1" => OAuthVersion::V1,
            other => {
                p.0.push(format!(
                    "lark.oauth_version must be v2 or v1, got {other:?}"
                ));
                OAuthVersion::V2
            }
        };
        let scopes = l.scopes.map(StringList::into_vec).unwrap_or_default();
        if !scopes.iter().any(|s| s == "offline_access") {
            p.0.push(
                "lark.scopes must include offline_access (without it Lark issues no refresh token)"
                    .into(),
            );
        }
        if !scopes.iter().any(|s| s == "vc:reserve") {
            p.0.push("lark.scopes must include vc:reserve (needed to reserve meetings)".into());
        }
        let notify_trainers = p.boolean("lark.notify_trainers", l.notify_trainers, true);
        let tenant_key = l
            .tenant_key
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());

        let s = self.security;
        let encryption_key = p.secret_key_hex("security.encryption_key", s.encryption_key.as_ref());
        let previous_keys: Vec<EncryptionKey> = s
            .previous_keys
            .map(SecretList::into_vec)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, key)| {
                p.secret_key_hex(&format!("security.previous_keys[{i}]"), Some(key))
            })
            .collect();
        match &s.state_secret {
            Some(v) if v.expose_secret().len() >= 32 => {}
            Some(v) if !v.expose_secret().is_empty() => p.0.push(format!(
                "security.state_secret must be at least 32 bytes; the value given has {}",
                v.expose_secret().len()
            )),
            _ => p.0.push("security.state_secret is missing".into()),
        }
        let require_email_match =
            p.boolean("security.require_email_match", s.require_email_match, true);

        let r = self.refresh;
        let refresh = RefreshSettings {
            interval: p.duration("refresh.interval", r.interval),
            refresh_token_window: p
                .duration("refresh.refresh_token_window", r.refresh_token_window),
            access_token_skew: p.duration("refresh.access_token_skew", r.access_token_skew),
        };

        let concurrency_text = p.required("processing.concurrency", self.processing.concurrency);
        let concurrency = match concurrency_text.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => n,
            _ => {
                if !concurrency_text.is_empty() {
                    p.0.push(format!(
                        "processing.concurrency must be a whole number from 1 to 1024, got {concurrency_text:?}"
                    ));
                }
                1
            }
        };

        let max_attempts = p.count("processing.max_attempts", self.processing.max_attempts);
        let retry_max_delay = p.duration(
            "processing.retry_max_delay",
            self.processing.retry_max_delay,
        );
        let max_in_doubt_applies = p.count(
            "processing.max_in_doubt_applies",
            self.processing.max_in_doubt_applies,
        );
        let in_doubt_delay =
            p.duration("processing.in_doubt_delay", self.processing.in_doubt_delay);
        let shutdown_timeout = p.duration(
            "processing.shutdown_timeout",
            self.processing.shutdown_timeout,
        );

        let (true, Some(bind), Some(auth), Some(encryption_key)) =
            (p.0.is_empty(), bind, auth, encryption_key)
        else {
            return Err(ConfigError { problems: p.0 });
        };
        Ok(Settings {
            server: ServerSettings {
                bind,
                public_url,
                request_timeout,
                rate_limit_per_minute,
                trust_forwarded_for,
            },
            store: StoreSettings { path: store_path },
            salesforce: SalesforceSettings {
                login_url,
                api_version,
                auth,
                streaming: StreamingSettings {
                    channel,
                    replay_from,
                    booking_id_field,
                },
                booking,
                trainer,
            },
            lark: LarkSettings {
                base_url,
                accounts_url,
                app_id,
                app_secret: l
                    .app_secret
                    .unwrap_or_else(|| SecretString::from(String::new())),
                oauth_version,
                scopes,
                notify_trainers,
                tenant_key,
                events,
            },
            security: SecuritySettings {
                encryption_key,
                previous_keys,
                state_secret: s
                    .state_secret
                    .unwrap_or_else(|| SecretString::from(String::new())),
                require_email_match,
            },
            refresh,
            processing: ProcessingSettings {
                concurrency,
                max_attempts,
                retry_max_delay,
                max_in_doubt_applies,
                in_doubt_delay,
                shutdown_timeout,
            },
            calendar,
            meetings: MeetingsSettings {
                unconnected,
                auto_record,
            },
            alerts,
            attendance,
            notes,
        })
    }
}

/// `salesforce.auth` and the credentials its flow needs; each missing one is named.
fn salesforce_auth(p: &mut Problems, sf: &RawSalesforce) -> Option<SalesforceAuth> {
    let flow = match p.required("salesforce.auth", sf.auth.clone()).as_str() {
        "client_credentials" | "" => SalesforceAuthFlow::ClientCredentials,
        "jwt_bearer" => SalesforceAuthFlow::JwtBearer,
        "password" => SalesforceAuthFlow::Password,
        other => {
            p.0.push(format!(
                "salesforce.auth must be client_credentials, jwt_bearer or password, got {other:?}"
            ));
            SalesforceAuthFlow::ClientCredentials
        }
    };
    let client_id = p.required("salesforce.client_id", sf.client_id.clone());
    let username = |p: &mut Problems, needed_by: &str| match sf.username.as_deref().map(str::trim) {
        Some(u) if !u.is_empty() => Some(u.to_string()),
        _ => {
            p.0.push(format!("salesforce.username is missing{needed_by}"));
            None
        }
    };
    let auth = match flow {
        SalesforceAuthFlow::ClientCredentials => {
            let needed_by = " (needed by auth = client_credentials)";
            let client_secret = p.secret(
                "salesforce.client_secret",
                sf.client_secret.clone(),
                needed_by,
            );
            SalesforceAuth::ClientCredentials {
                client_id,
                client_secret: client_secret?,
            }
        }
        SalesforceAuthFlow::Password => {
            let needed_by = " (needed by auth = password)";
            let client_secret = p.secret(
                "salesforce.client_secret",
                sf.client_secret.clone(),
                needed_by,
            );
            let username = username(p, needed_by);
            let password = p.secret("salesforce.password", sf.password.clone(), needed_by);
            SalesforceAuth::Password {
                client_id,
                client_secret: client_secret?,
                username: username?,
                password: password?,
            }
        }
        SalesforceAuthFlow::JwtBearer => {
            let needed_by = " (needed by auth = jwt_bearer)";
            let username = username(p, needed_by);
            let private_key_path = match sf.private_key_path.as_deref().map(str::trim) {
                Some(path) if !path.is_empty() => {
                    let path = PathBuf::from(path);
                    if !path.exists() {
                        p.0.push(format!(
                            "salesforce.private_key_path {} does not exist",
                            path.display()
                        ));
                    }
                    Some(path)
                }
                _ => {
                    p.0.push(format!("salesforce.private_key_path is missing{needed_by}"));
                    None
                }
            };
            SalesforceAuth::JwtBearer {
                client_id,
                username: username?,
                private_key_path: private_key_path?,
            }
        }
    };
    Some(auth)
}
