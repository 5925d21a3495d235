//! Configuration: the layered settings of design §2.2, loaded with the `config` crate and
//! validated into typed [`Settings`].
//!
//! Layers, later wins: `config/default.toml` (embedded in the binary) → the file from
//! `--config`/`LVB_CONFIG` → environment variables `LVB__SECTION__KEY`.
//! Validation collects every missing or invalid key into one [`ConfigError`]; no message
//! ever contains a secret's value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The checked-in defaults, embedded so the binary runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Prefix of environment overrides (`LVB__LARK__APP_SECRET`).
const ENV_PREFIX: &str = "LVB";

/// Every problem found while loading the configuration, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One entry per missing or invalid key, naming the key.
    pub problems: Vec<String>,
}

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
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Listen address, e.g. `127.0.0.1:8080` (port 0 = any free port).
    pub bind: String,
    /// External base URL, without a trailing slash.
    pub public_url: Url,
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
    pub fn connect_link(&self, trainer_id: &str) -> String {
        format!(
            "{}/oauth/lark/start?trainer={trainer_id}",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub path: PathBuf,
}

/// Salesforce login flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesforceAuthFlow {
    ClientCredentials,
    JwtBearer,
    Password,
}

#[derive(Debug, Clone)]
pub struct SalesforceSettings {
    pub login_url: Url,
    /// e.g. `62.0`.
    pub api_version: String,
    pub auth: SalesforceAuthFlow,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub private_key_path: Option<PathBuf>,
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
    /// The Bayeux replay id this stands for.
    pub fn replay_id(self) -> i64 {
        match self {
            ReplayFrom::Latest => -1,
            ReplayFrom::Earliest => -2,
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
}

impl BookingSettings {
    /// The `{Field__c}` placeholders of the topic template, in order.
    pub fn topic_fields(&self) -> Vec<String> {
        template_fields(&self.topic_template)
    }

    /// Fields the service writes on the booking; a change touching only these is our own.
    pub fn output_fields(&self) -> [&str; 4] {
        [
            &self.link_field,
            &self.reservation_field,
            &self.meeting_status_field,
            &self.meeting_error_field,
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
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// 32-byte AES-256 key (validated from 64 hex chars).
    pub encryption_key: SecretString,
    pub previous_keys: Vec<SecretString>,
    pub state_secret: SecretString,
    pub require_email_match: bool,
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
}

// ---------------------------------------------------------------------------------------
// Raw, as-deserialized layer: everything optional so validation can name what is missing.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    server: RawServer,
    store: RawStore,
    salesforce: RawSalesforce,
    lark: RawLark,
    security: RawSecurity,
    refresh: RawRefresh,
    processing: RawProcessing,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawServer {
    bind: Option<String>,
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawStore {
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSalesforce {
    login_url: Option<String>,
    api_version: Option<String>,
    auth: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    username: Option<String>,
    password: Option<SecretString>,
    private_key_path: Option<String>,
    streaming: RawStreaming,
    booking: RawBooking,
    trainer: RawTrainer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawStreaming {
    channel: Option<String>,
    replay_from: Option<String>,
    booking_id_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawBooking {
    object: Option<String>,
    trainer_field: Option<String>,
    start_field: Option<String>,
    end_field: Option<String>,
    service_type_field: Option<String>,
    remote_values: Option<StringList>,
    status_field: Option<String>,
    cancelled_values: Option<StringList>,
    topic_template: Option<String>,
    link_field: Option<String>,
    reservation_field: Option<String>,
    meeting_status_field: Option<String>,
    meeting_error_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTrainer {
    object: Option<String>,
    email_field: Option<String>,
    name_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawLark {
    base_url: Option<String>,
    accounts_url: Option<String>,
    app_id: Option<String>,
    app_secret: Option<SecretString>,
    oauth_version: Option<String>,
    scopes: Option<StringList>,
    notify_trainers: Option<BoolLike>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSecurity {
    encryption_key: Option<SecretString>,
    previous_keys: Option<SecretList>,
    state_secret: Option<SecretString>,
    require_email_match: Option<BoolLike>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRefresh {
    interval: Option<String>,
    refresh_token_window: Option<String>,
    access_token_skew: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawProcessing {
    concurrency: Option<String>,
    max_attempts: Option<String>,
    retry_max_delay: Option<String>,
    max_in_doubt_applies: Option<String>,
    in_doubt_delay: Option<String>,
}

/// A list given either as a TOML array or, from the environment, as a comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringList {
    List(Vec<String>),
    Csv(String),
}

impl StringList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringList::List(v) => v,
            StringList::Csv(s) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

/// Like [`StringList`], for secrets.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SecretList {
    List(Vec<SecretString>),
    Csv(SecretString),
}

impl SecretList {
    fn into_vec(self) -> Vec<SecretString> {
        match self {
            SecretList::List(v) => v,
            SecretList::Csv(s) => s
                .expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| SecretString::from(p.to_string()))
                .collect(),
        }
    }
}

/// A boolean from TOML or from an environment string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BoolLike {
    Bool(bool),
    Text(String),
}

impl Settings {
    /// Loads defaults, then `file` (if any), then `LVB__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, env)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError {
                    problems: vec![format!("config file {} does not exist", path.display())],
                });
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env_map: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(env_map)),
        );
        let raw: Raw = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError {
                // config's messages name the key and the expected type, never the value.
                problems: vec![scrub_config_error(&e.to_string())],
            })?;
        raw.validate()
    }
}

#[cfg(test)]
impl Settings {
    /// Settings for the unit tests: every key valid, pointing at the simulators at the
    /// given URLs, listening on any free port (see `App::build`).
    pub(crate) fn for_simulators(
        sf_login_url: &str,
        lark_base_url: &str,
        store_path: &Path,
    ) -> Result<Settings, ConfigError> {
        Self::load_from(
            None,
            lvb_simulators::service_env(sf_login_url, lark_base_url, store_path),
        )
    }
}

/// Random bytes as hex (generated keys for the simulators and demo).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut buf);
    hex::encode(buf)
}

/// `config` errors may quote the offending value ("invalid type: string \"abc\"");
/// drop any quoted part so a mistyped secret is never echoed.
fn scrub_config_error(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for c in msg.chars() {
        if c == '"' {
            if !in_quote {
                out.push_str("\"…");
            }
            in_quote = !in_quote;
            if !in_quote {
                out.push('"');
            }
            continue;
        }
        if !in_quote {
            out.push(c);
        }
    }
    out
}

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

    fn secret_key_hex(&mut self, key: &str, value: Option<&SecretString>) {
        match value {
            None => self.0.push(format!("{key} is missing")),
            Some(s) => {
                let v = s.expose_secret().trim();
                if v.is_empty() {
                    self.0.push(format!("{key} is missing"));
                } else if v.len() != 64 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
                    // Never echo the value: only its length.
                    self.0.push(format!(
                        "{key} must be 64 hex characters (a 32-byte AES-256 key); the value given has {} characters{}",
                        v.len(),
                        if v.chars().all(|c| c.is_ascii_hexdigit()) { "" } else { " and is not all hex" }
                    ));
                }
            }
        }
    }
}

/// A Salesforce API name: starts with a letter; letters, digits and underscores.
pub fn is_api_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Raw {
    fn validate(self) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();

        let bind = p.required("server.bind", self.server.bind);
        if !bind.is_empty() && bind.parse::<std::net::SocketAddr>().is_err() {
            p.0.push(format!(
                "server.bind must be an address like 127.0.0.1:8080, got {bind:?}"
            ));
        }
        let public_url = p.url("server.public_url", self.server.public_url);
        let store_path = PathBuf::from(p.required("store.path", self.store.path));

        let sf = self.salesforce;
        let login_url = p.url("salesforce.login_url", sf.login_url);
        let api_version = p.required("salesforce.api_version", sf.api_version);
        let version_ok = api_version
            .strip_suffix(".0")
            .is_some_and(|major| major.parse::<u32>().is_ok());
        if !api_version.is_empty() && !version_ok {
            p.0.push(format!(
                "salesforce.api_version must look like \"62.0\", got {api_version:?}"
            ));
        }
        let auth_text = p.required("salesforce.auth", sf.auth);
        let auth = match auth_text.as_str() {
            "client_credentials" => SalesforceAuthFlow::ClientCredentials,
            "jwt_bearer" => SalesforceAuthFlow::JwtBearer,
            "password" => SalesforceAuthFlow::Password,
            "" => SalesforceAuthFlow::ClientCredentials,
            other => {
                p.0.push(format!(
                    "salesforce.auth must be client_credentials, jwt_bearer or password, got {other:?}"
                ));
                SalesforceAuthFlow::ClientCredentials
            }
        };
        let client_id = p.required("salesforce.client_id", sf.client_id);
        let present = |s: &Option<SecretString>| {
            s.as_ref()
                .is_some_and(|v| !v.expose_secret().trim().is_empty())
        };
        let username = sf.username.filter(|u| !u.trim().is_empty());
        let private_key_path = sf
            .private_key_path
            .filter(|u| !u.trim().is_empty())
            .map(PathBuf::from);
        match auth {
            SalesforceAuthFlow::ClientCredentials => {
                if !present(&sf.client_secret) {
                    p.0.push(
                        "salesforce.client_secret is missing (needed by auth = client_credentials)"
                            .into(),
                    );
                }
            }
            SalesforceAuthFlow::Password => {
                if !present(&sf.client_secret) {
                    p.0.push(
                        "salesforce.client_secret is missing (needed by auth = password)".into(),
                    );
                }
                if username.is_none() {
                    p.0.push("salesforce.username is missing (needed by auth = password)".into());
                }
                if !present(&sf.password) {
                    p.0.push("salesforce.password is missing (needed by auth = password)".into());
                }
            }
            SalesforceAuthFlow::JwtBearer => {
                if username.is_none() {
                    p.0.push("salesforce.username is missing (needed by auth = jwt_bearer)".into());
                }
                match &private_key_path {
                    None => p.0.push(
                        "salesforce.private_key_path is missing (needed by auth = jwt_bearer)"
                            .into(),
                    ),
                    Some(path) if !path.exists() => p.0.push(format!(
                        "salesforce.private_key_path {} does not exist",
                        path.display()
                    )),
                    Some(_) => {}
                }
            }
        }

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

        let l = self.lark;
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

        let s = self.security;
        p.secret_key_hex("security.encryption_key", s.encryption_key.as_ref());
        let previous_keys = s
            .previous_keys
            .map(SecretList::into_vec)
            .unwrap_or_default();
        for (i, key) in previous_keys.iter().enumerate() {
            p.secret_key_hex(&format!("security.previous_keys[{i}]"), Some(key));
        }
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

        if !p.0.is_empty() {
            return Err(ConfigError { problems: p.0 });
        }
        Ok(Settings {
            server: ServerSettings { bind, public_url },
            store: StoreSettings { path: store_path },
            salesforce: SalesforceSettings {
                login_url,
                api_version,
                auth,
                client_id,
                client_secret: sf.client_secret,
                username,
                password: sf.password,
                private_key_path,
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
            },
            security: SecuritySettings {
                encryption_key: s
                    .encryption_key
                    .unwrap_or_else(|| SecretString::from(String::new())),
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
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn valid_env() -> Vec<(String, String)> {
        env(&[
            ("LVB__SALESFORCE__CLIENT_ID", "cid"),
            ("LVB__SALESFORCE__CLIENT_SECRET", "csecret-value"),
            ("LVB__LARK__APP_ID", "cli_app"),
            ("LVB__LARK__APP_SECRET", "lark-secret-value"),
            ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
            ("LVB__SECURITY__STATE_SECRET", &"s".repeat(40)),
        ])
    }

    #[test]
    fn defaults_plus_secrets_from_env_load() {
        let s = Settings::load_from(None, valid_env()).expect("valid");
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert_eq!(
            s.salesforce.streaming.channel,
            "/data/Training_Booking__ChangeEvent"
        );
        assert_eq!(
            s.salesforce.booking.remote_values,
            vec!["Remote".to_string()]
        );
        assert_eq!(s.refresh.interval, Duration::from_secs(15 * 60));
        assert_eq!(
            s.refresh.refresh_token_window,
            Duration::from_secs(48 * 3600)
        );
        assert_eq!(s.processing.concurrency, 16);
        assert_eq!(s.processing.max_attempts, 8);
        assert_eq!(s.processing.retry_max_delay, Duration::from_secs(15 * 60));
        assert_eq!(s.processing.max_in_doubt_applies, 2);
        assert_eq!(s.processing.in_doubt_delay, Duration::from_secs(60));
        assert_eq!(
            s.server.redirect_uri(),
            "http://localhost:8080/oauth/lark/callback"
        );
        assert_eq!(s.lark.oauth_version, OAuthVersion::V2);
    }

    #[test]
    fn env_overrides_nested_keys_and_lists() {
        let mut e = valid_env();
        e.extend(env(&[
            ("LVB__SALESFORCE__BOOKING__REMOTE_VALUES", "Remote, Virtual"),
            ("LVB__PROCESSING__CONCURRENCY", "4"),
            ("LVB__LARK__NOTIFY_TRAINERS", "false"),
        ]));
        let s = Settings::load_from(None, e).expect("valid");
        assert_eq!(
            s.salesforce.booking.remote_values,
            vec!["Remote", "Virtual"]
        );
        assert_eq!(s.processing.concurrency, 4);
        assert!(!s.lark.notify_trainers);
    }

    #[test]
    fn file_layer_sits_between_defaults_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\npublic_url = \"https://bridge.example.com\"\n[processing]\nconcurrency = 3\n",
        )
        .unwrap();
        let mut e = valid_env();
        e.push(("LVB__PROCESSING__CONCURRENCY".into(), "5".into()));
        let s = Settings::load_from(Some(&path), e).expect("valid");
        assert_eq!(
            s.server.redirect_uri(),
            "https://bridge.example.com/oauth/lark/callback"
        );
        assert_eq!(s.processing.concurrency, 5);
    }

    #[test]
    fn every_problem_is_named_in_one_error_without_echoing_secrets() {
        let e = env(&[
            (
                "LVB__SECURITY__ENCRYPTION_KEY",
                "not-hex-super-secret-value",
            ),
            ("LVB__SECURITY__STATE_SECRET", "short-secret"),
            ("LVB__REFRESH__INTERVAL", "soon"),
        ]);
        let err = Settings::load_from(None, e).unwrap_err();
        let text = err.to_string();
        for key in [
            "salesforce.client_id",
            "salesforce.client_secret",
            "lark.app_id",
            "lark.app_secret",
            "security.encryption_key must be 64 hex characters",
            "security.state_secret must be at least 32 bytes",
            "refresh.interval",
        ] {
            assert!(text.contains(key), "{key} not named in: {text}");
        }
        assert!(!text.contains("not-hex-super-secret-value"));
        assert!(!text.contains("short-secret"));
    }

    #[test]
    fn jwt_flow_needs_username_and_key_file() {
        let mut e = valid_env();
        e.push(("LVB__SALESFORCE__AUTH".into(), "jwt_bearer".into()));
        let text = Settings::load_from(None, e).unwrap_err().to_string();
        assert!(text.contains("salesforce.username is missing"));
        assert!(text.contains("salesforce.private_key_path is missing"));
    }

    #[test]
    fn template_placeholders_are_found() {
        assert_eq!(
            template_fields("Remote Training: {Merchant_Name__c} ({Name})"),
            vec!["Merchant_Name__c", "Name"]
        );
        assert!(template_fields("no fields").is_empty());
    }
}
