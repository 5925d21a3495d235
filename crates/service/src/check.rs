//! `check`: validates the configuration and every external dependency, printing a
//! checklist with ✓/✗ and, for each ✗, how to fix it (or, with `--json`, the same
//! checklist as one JSON document). Read-only: it changes nothing in
//! Salesforce or Lark (the streaming probe subscribes and disconnects).

use std::path::Path;

use serde_json::Value;

use crate::config::{LarkEvents, Settings, Unconnected};
use crate::lark::events::EVENT_TYPES;
use crate::lark::{EventsError, LarkClient, LarkError, LongConnection};
use crate::salesforce::rest::ObjectDescribe;
use crate::salesforce::SalesforceClient;
use crate::tokens::trainer::{
    F_ACCESS_TOKEN, F_CONNECTED, F_CONNECTED_AT, F_CONNECTION_ERROR, F_LAST_REFRESH,
    F_REFRESH_EXPIRES_AT, F_REFRESH_TOKEN, F_TOKEN_EXPIRES_AT, F_USER_ID,
};
use crate::tokens::Vault;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckLine {
    /// The check's name (`name` in the JSON checklist).
    #[serde(rename = "name")]
    pub what: String,
    pub ok: bool,
    /// Details when ok; how to fix it when not.
    pub detail: String,
}

/// The machine-readable checklist of `check --json`:
/// `{"ok": bool, "checks": [{"name", "ok", "detail"}, …]}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checklist {
    /// True when every check passed (and so `check` exits 0).
    pub ok: bool,
    pub checks: Vec<CheckLine>,
}

impl Checklist {
    /// The checklist of these lines.
    pub fn new(checks: Vec<CheckLine>) -> Checklist {
        Checklist {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

/// Runs every check, prints the checklist as one JSON document, returns true when all
/// passed. Details say how to fix a failure, and never hold a secret (as in [`run`]).
pub async fn run_json(config: Option<&Path>) -> bool {
    let checklist = Checklist::new(collect(config).await);
    match serde_json::to_string_pretty(&checklist) {
        Ok(text) => println!("{text}"),
        // Strings and booleans always serialize; keep the exit code honest regardless.
        Err(_) => return false,
    }
    checklist.ok
}

/// Runs every check, prints the checklist, returns true when all passed.
pub async fn run(config: Option<&Path>) -> bool {
    let lines = collect(config).await;
    for l in &lines {
        if l.ok {
            println!(
                "✓ {}{}",
                l.what,
                if l.detail.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", l.detail)
                }
            );
        } else {
            println!("✗ {} — {}", l.what, l.detail);
        }
    }
    let failed = lines.iter().filter(|l| !l.ok).count();
    if failed == 0 {
        println!("\nall {} checks passed", lines.len());
    } else {
        println!("\n{failed} of {} checks failed", lines.len());
    }
    failed == 0
}

fn pass(what: &str, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        ok: true,
        what: what.into(),
        detail: detail.into(),
    }
}

fn fail(what: &str, fix: impl Into<String>) -> CheckLine {
    CheckLine {
        ok: false,
        what: what.into(),
        detail: fix.into(),
    }
}

/// Runs every check and returns the checklist (tests read it directly).
pub async fn collect(config: Option<&Path>) -> Vec<CheckLine> {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            return vec![fail(
                "configuration valid",
                format!("{e}\n  fix: set the keys above in your config file or as LVB__SECTION__KEY environment variables (see config/default.toml)"),
            )]
        }
    };
    collect_with(&settings).await
}

/// As [`collect`], for already-loaded settings.
pub async fn collect_with(settings: &Settings) -> Vec<CheckLine> {
    let mut lines = vec![pass("configuration valid", "")];

    let redirect = settings.server.redirect_uri();
    let host = settings.server.public_url.host_str().unwrap_or("");
    if settings.server.public_url.scheme() == "https" || host == "localhost" || host == "127.0.0.1"
    {
        lines.push(pass(
            "redirect URI",
            format!("{redirect} (register exactly this in the Lark app's security settings)"),
        ));
    } else {
        lines.push(fail("redirect URI", format!("{redirect} is plain http on a public host; Lark requires https: set server.public_url to your https URL")));
    }

    // Salesforce.
    let sf = match SalesforceClient::new(&settings.salesforce) {
        Ok(c) => c,
        Err(e) => {
            lines.push(fail(
                "Salesforce login",
                format!("{e}; fix salesforce.* keys"),
            ));
            return lines;
        }
    };
    match sf.session().await {
        Ok(session) => {
            lines.push(pass("Salesforce login", format!("{} via {:?}", session.instance_url, settings.salesforce.auth.flow())));
            lines.push(pass("integration user", format!("user id {}", session.user_id)));
            let b = &settings.salesforce.booking;
            let t = &settings.salesforce.trainer;
            match sf.describe(&b.object).await {
                Ok(d) => {
                    let mut expected: Vec<(&str, &[&str])> = vec![
                        (&b.trainer_field, &["reference"]),
                        (&b.start_field, &["datetime"]),
                        (&b.end_field, &["datetime"]),
                        (&b.service_type_field, &["picklist", "string"]),
                        (&b.status_field, &["picklist", "string"]),
                        (&b.link_field, &["url", "string"]),
                        (&b.reservation_field, &["string"]),
                        (&b.meeting_status_field, &["picklist"]),
                        (&b.meeting_error_field, &["string", "textarea"]),
                    ];
                    let topic = b.topic_fields();
                    let description_fields = settings.calendar.description_fields();
                    for f in &topic {
                        expected.push((f.as_str(), &["string", "textarea", "picklist", "email", "phone", "url", "double", "int", "reference", "id", "datetime", "date"]));
                    }
                    if settings.calendar.enabled {
                        // Rule 20: the event id is written, the guest's email read.
                        expected.push((&b.calendar_event_field, &["string"]));
                        for f in description_fields.iter() {
                            expected.push((f.as_str(), &["string", "textarea", "picklist", "email", "phone", "url", "double", "int", "reference", "id", "datetime", "date"]));
                        }
                        if let Some(f) = &b.attendee_email_field {
                            expected.push((f.as_str(), &["email", "string"]));
                        }
                    }
                    lines.push(fields_line(&b.object, &d, &expected));
                    if let Some(status) = d.field(&b.meeting_status_field) {
                        let missing: Vec<&str> = crate::bookings::MeetingStatus::ALL
                            .iter()
                            .map(|s| s.as_str())
                            .filter(|v| !status.picklist_values.iter().any(|p| p == v))
                            .collect();
                        if missing.is_empty() {
                            lines.push(pass("meeting status values", format!("{} has every value the service writes", b.meeting_status_field)));
                        } else {
                            lines.push(fail("meeting status values", format!("{} lacks {:?}; deploy salesforce-metadata/", b.meeting_status_field, missing)));
                        }
                    }
                }
                Err(e) => lines.push(fail(&format!("object {}", b.object), format!("{e}; check salesforce.booking.object and the integration user's permission set"))),
            }
            match sf.describe(&t.object).await {
                Ok(d) => {
                    let expected: Vec<(&str, &[&str])> = vec![
                        (&t.email_field, &["email", "string"]),
                        (&t.name_field, &["string"]),
                        (F_USER_ID, &["string"]),
                        (F_ACCESS_TOKEN, &["textarea"]),
                        (F_REFRESH_TOKEN, &["textarea"]),
                        (F_TOKEN_EXPIRES_AT, &["datetime"]),
                        (F_REFRESH_EXPIRES_AT, &["datetime"]),
                        (F_CONNECTED_AT, &["datetime"]),
                        (F_LAST_REFRESH, &["datetime"]),
                        (F_CONNECTED, &["boolean"]),
                        (F_CONNECTION_ERROR, &["string", "textarea"]),
                    ];
                    lines.push(fields_line(&t.object, &d, &expected));
                    for f in [F_ACCESS_TOKEN, F_REFRESH_TOKEN] {
                        if let Some(field) = d.field(f) {
                            if field.length < 8192 {
                                lines.push(fail(&format!("{}.{f} length", t.object), format!("{} characters is too short for encrypted Lark tokens; make it a Long Text Area of 8192 (Lark tokens are up to ~2 KB, and hex doubles them)", field.length)));
                            }
                        }
                    }
                    lines.push(stored_token_line(&sf, settings, &t.object).await);
                }
                Err(e) => lines.push(fail(&format!("object {}", t.object), format!("{e}; check salesforce.trainer.object and the integration user's permission set"))),
            }
            let channel = &settings.salesforce.streaming.channel;
            match crate::salesforce::streaming::check_subscription(sf.clone(), &settings.salesforce.streaming, std::time::Duration::from_secs(30)).await {
                Ok(()) => lines.push(pass("streaming subscription", format!("handshake and subscribe to {channel} succeeded"))),
                Err(e) => lines.push(fail("streaming subscription", format!("{e}; enable Change Data Capture for the booking object (salesforce-metadata/ ships it) and give the integration user View All on it"))),
            }
        }
        Err(e) => lines.push(fail(
            "Salesforce login",
            format!("{e}; check salesforce.login_url (your My Domain URL for client_credentials), salesforce.client_id/client_secret and that the connected app allows the {:?} flow with a Run As user", settings.salesforce.auth.flow()),
        )),
    }

    lines.push(calendar_line(settings));

    // Lark.
    match LarkClient::for_service(settings) {
        Ok(lark) => {
            match lark.tenant_token().await {
                Ok(_) => lines.push(pass("Lark app token", format!("app {} at {}", settings.lark.app_id, settings.lark.base_url))),
                Err(e) => lines.push(fail("Lark app token", format!("{e}; check lark.app_id and lark.app_secret (Lark developer console → Credentials)"))),
            }
            if settings.meetings.unconnected == Unconnected::AppHosted {
                lines.push(app_hosted_line(&lark).await);
            }
            if let Some(chat) = &settings.alerts.lark_chat_id {
                lines.push(alerts_line(&lark, chat).await);
            }
        }
        Err(e) => lines.push(fail("Lark app token", format!("{e}; check lark.* keys"))),
    }
    lines.push(events_line(settings).await);
    lines
}

/// What the developer console needs for the events (rule 28), named in the events line
/// whatever the outcome. The console saves "long connection" only while a client is
/// connected, so `run` must be up when it is chosen. The recording URL comes in the
/// `recording_ready_v1` event itself (`vc:meeting:readonly`); `vc:record:readonly` is what
/// `GET /open-apis/vc/v1/meetings/:id/recording` needs (the Feishu docs' 获取录制文件),
/// for reading a recording whose event was missed.
fn events_console_steps() -> String {
    format!(
        "in the Lark developer console (Events & Callbacks) choose \"receive events through a long connection\" (it saves only while `run` is connected), add the events {}, and grant the app the permission vc:meeting:readonly (the events and the participants call); vc:record:readonly as well to read a recording whose event was missed; the long connection is for self-built apps only",
        EVENT_TYPES.join(", ")
    )
}

/// `lark.events` (rule 28): whether the endpoint gives this app a connection URL (code 0),
/// else Lark's code and message; and the console steps either way. Read-only: one
/// bootstrap call, no WebSocket is opened.
async fn events_line(settings: &Settings) -> CheckLine {
    const WHAT: &str = "Lark events";
    let notes = settings.notes.join("; ");
    if settings.lark.events == LarkEvents::Off {
        let mut detail = "off (lark.events = \"off\")".to_string();
        if !notes.is_empty() {
            detail = format!("{detail}: {notes}");
        }
        return pass(WHAT, detail);
    }
    let connection = match LongConnection::new(&settings.lark, crate::metrics::Metrics::default()) {
        Ok(c) => c,
        Err(e) => return fail(WHAT, format!("{e}; check lark.base_url")),
    };
    match connection.probe().await {
        Ok(endpoint) => pass(
            WHAT,
            format!(
                "the long-connection endpoint answers for app {} ({}); {}",
                settings.lark.app_id,
                endpoint.display_url(),
                events_console_steps()
            ),
        ),
        Err(e @ EventsError::Refused { .. }) => fail(
            WHAT,
            format!(
                "{e}; check lark.app_id and lark.app_secret; {}",
                events_console_steps()
            ),
        ),
        Err(e) => fail(
            WHAT,
            format!(
                "{e}; Lark's endpoint {}{} did not give a connection URL: check lark.base_url and the network, then {}",
                settings.lark.base_url.as_str().trim_end_matches('/'),
                crate::lark::events::ENDPOINT_PATH,
                events_console_steps()
            ),
        ),
    }
}

/// `alerts.lark_chat_id` (rule 22): the bot must be a member of the chat, or every alert
/// is refused (230002) and admins hear nothing. Read-only: nothing is posted.
async fn alerts_line(lark: &LarkClient, chat: &str) -> CheckLine {
    const WHAT: &str = "admin alerts chat";
    match lark.bot_in_chat(chat).await {
        Ok(true) => pass(WHAT, format!("the app's bot is a member of {chat}")),
        Ok(false) => fail(
            WHAT,
            format!("the app's bot is not a member of {chat}, so Lark would refuse every alert; add the bot to the chat (chat settings → Bots → Add Bot)"),
        ),
        Err(e @ LarkError::PermissionDenied { .. }) => fail(
            WHAT,
            format!("{e}; the app needs im:message:send_as_bot to post and one of im:chat:readonly or im:chat.members:read for this check (developer console → Permissions & Scopes)"),
        ),
        Err(e) => fail(
            WHAT,
            format!("{e}; check alerts.lark_chat_id (the oc_… id of a group chat of your tenant)"),
        ),
    }
}

/// An address no Lark tenant has: asking for it shows whether the app may look users up
/// by email without looking anyone up.
const PROBE_EMAIL: &str = "lark-vc-bridge-check@example.invalid";

/// `meetings.unconnected = "app_hosted"` (rule 21): the app permissions it needs, and
/// whether the email lookup works with the app's token. The VC permission is only named:
/// proving it would take a reservation, and `check` changes nothing.
async fn app_hosted_line(lark: &LarkClient) -> CheckLine {
    const WHAT: &str = "app-hosted meetings";
    const NEEDS: &str = "the Lark app needs the tenant-level permissions vc:reserve (reserve meetings for users; used at the first app-hosted meeting, not tried here) and contact:user.id:readonly (find trainers by email)";
    match lark.open_ids_by_email(&[PROBE_EMAIL]).await {
        Ok(_) => pass(WHAT, format!("{NEEDS}; the email lookup works with the app's token")),
        Err(e @ LarkError::PermissionDenied { .. }) => fail(
            WHAT,
            format!("{e}; {NEEDS}: grant contact:user.id:readonly in the Lark developer console (Permissions & Scopes) and publish a new app version"),
        ),
        Err(e) => fail(WHAT, format!("the email lookup failed: {e}; {NEEDS}")),
    }
}

/// Which calendar scopes the Lark app needs (rule 20), or that the calendar is off.
fn calendar_line(settings: &Settings) -> CheckLine {
    if !settings.calendar.enabled {
        return pass(
            "calendar",
            "off (calendar.enabled = false): meetings get no calendar event",
        );
    }
    let requested = settings.requested_scopes();
    let missing: Vec<&str> = crate::config::CALENDAR_SCOPES
        .into_iter()
        .filter(|s| !requested.iter().any(|r| r == s))
        .collect();
    if !missing.is_empty() {
        return fail(
            "calendar scopes",
            format!("lark.scopes lacks {missing:?}; add them (and enable them for the Lark app) or set calendar.enabled = false"),
        );
    }
    pass(
        "calendar scopes",
        format!(
            "the Lark app needs the user scopes {} (developer console → Permissions & Scopes); trainers who connected without them get meetings without events and one reminder to reconnect",
            crate::config::CALENDAR_SCOPES.join(", ")
        ),
    )
}

fn fields_line(object: &str, d: &ObjectDescribe, expected: &[(&str, &[&str])]) -> CheckLine {
    let mut problems = Vec::new();
    for (name, types) in expected {
        match d.field(name) {
            None => problems.push(format!("{object}.{name} is missing")),
            Some(f) if !types.contains(&f.type_.as_str()) => problems.push(format!(
                "{object}.{name} is of type {} (expected {})",
                f.type_,
                types.join(" or ")
            )),
            _ => {}
        }
    }
    if problems.is_empty() {
        pass(
            &format!("fields of {object}"),
            format!("{} fields present with the right types", expected.len()),
        )
    } else {
        fail(
            &format!("fields of {object}"),
            format!(
                "{}; deploy salesforce-metadata/ or fix the salesforce.* field keys",
                problems.join("; ")
            ),
        )
    }
}

async fn stored_token_line(sf: &SalesforceClient, settings: &Settings, object: &str) -> CheckLine {
    let soql =
        format!("SELECT Id, {F_ACCESS_TOKEN} FROM {object} WHERE {F_USER_ID} != null LIMIT 20");
    let rows = match sf.query(&soql).await {
        Ok(r) => r,
        Err(e) => {
            return fail(
                "encryption key",
                format!("could not read stored tokens: {e}"),
            )
        }
    };
    let Some((id, enc)) = rows.iter().find_map(|r| {
        Some((
            r.get("Id")?.as_str()?.to_string(),
            r.get(F_ACCESS_TOKEN).and_then(Value::as_str)?.to_string(),
        ))
    }) else {
        return pass("encryption key", "no stored token yet to test it on");
    };
    let vault = Vault::from_settings(&settings.security);
    match vault.decrypt(&enc) {
        Ok(_) => pass("encryption key", format!("decrypts the stored token of trainer {id}")),
        Err(e) => fail("encryption key", format!("{e} (trainer {id}); set security.encryption_key to the key the tokens were written with, or list it in security.previous_keys")),
    }
}

#[cfg(test)]
mod tests;
