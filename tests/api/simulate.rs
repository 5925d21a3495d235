//! `lark-vc-bridge simulate` as an outside client sees it: the real binary is started as a
//! child process and only what it prints and what its Lark simulator answers over HTTP are
//! observed. These are the Lark calls issues 13 and 14 build on (design §4–§5): the host's
//! calendar with an idempotency key, `batch_get_id`, reserving for an owner with the
//! tenant token, and a bot message to a group chat.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::BIN;
/// How long `simulate` may take to print its banner.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
const REDIRECT: &str = "http://127.0.0.1:9/oauth/lark/callback";
const CALENDAR_SCOPES: &str =
    "vc:reserve offline_access calendar:calendar calendar:calendar:readonly";

/// What `simulate` printed: the Lark base URL, the `[lark]` snippet keys and the seeded
/// trainers' emails (with a Lark account, and without).
struct Printed {
    lark_url: String,
    lark: HashMap<String, String>,
    /// `alerts.lark_chat_id`, when printed.
    alerts_chat: Option<String>,
    /// The curl lines of "Drive a reserved meeting".
    curl: Vec<String>,
    with_account: Vec<String>,
    without_account: Vec<String>,
}

/// Starts `simulate` on free ports and reads its banner up to "Running until ctrl-c.".
async fn start_simulate() -> (Child, Printed) {
    let mut child = Command::new(BIN)
        .args(["simulate", "--sf-port", "0", "--lark-port", "0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("simulate starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Printed {
        lark_url: String::new(),
        lark: HashMap::new(),
        alerts_chat: None,
        curl: Vec::new(),
        with_account: Vec::new(),
        without_account: Vec::new(),
    };
    let mut section = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("simulate's stdout") {
            let trimmed = line.trim();
            if let Some(url) = line.strip_prefix("Lark simulator:") {
                printed.lark_url = url.trim().to_string();
            } else if trimmed.starts_with('[') && trimmed.ends_with(']') {
                section = trimmed.to_string();
            } else if let (true, Some(("lark_chat_id", value))) = (
                section == "[alerts]",
                trimmed.split_once('=').map(|(k, v)| (k.trim(), v)),
            ) {
                printed.alerts_chat = Some(value.trim().trim_matches('"').to_string());
            } else if trimmed.starts_with("curl ") {
                printed.curl.push(trimmed.to_string());
            } else if let (true, Some((key, value))) =
                (section == "[lark]", trimmed.split_once('='))
            {
                printed.lark.insert(
                    key.trim().to_string(),
                    value.trim().trim_matches('"').to_string(),
                );
            } else if let Some(email) = trimmed.split_whitespace().find(|w| w.contains('@')) {
                if trimmed.ends_with("no Lark account") {
                    printed.without_account.push(email.to_string());
                } else if trimmed.ends_with("Lark user") {
                    printed.with_account.push(email.to_string());
                }
            } else if trimmed.starts_with("Running until ctrl-c") {
                return;
            }
        }
        panic!("simulate exited before it was running");
    };
    tokio::time::timeout(STARTUP_DEADLINE, read)
        .await
        .expect("simulate printed its banner in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(printed.lark_url.starts_with("http://127.0.0.1:"));
    (child, printed)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One Open API call; answers (HTTP status, JSON body).
async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn tenant_token(p: &Printed) -> String {
    let answer: Value = http()
        .post(format!(
            "{}/open-apis/auth/v3/tenant_access_token/internal",
            p.lark_url
        ))
        .json(&json!({ "app_id": p.lark["app_id"], "app_secret": p.lark["app_secret"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["tenant_access_token"].as_str().unwrap().to_string()
}

/// Authorize (approving as `email` with the simulator's `sim_user`) and exchange the code
/// on the v2 token endpoint, as the connect flow does.
async fn user_token(p: &Printed, email: &str, scope: &str) -> String {
    let verifier = "v".repeat(50);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut url =
        url::Url::parse(&format!("{}/open-apis/authen/v1/authorize", p.lark_url)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &p.lark["app_id"])
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "st")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("sim_user", email);
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let grant: Value = http()
        .post(format!("{}/open-apis/authen/v2/oauth/token", p.lark_url))
        .json(&json!({
            "grant_type": "authorization_code",
            "client_id": p.lark["app_id"],
            "client_secret": p.lark["app_secret"],
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    grant["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn simulate_serves_the_calendar_with_idempotent_creates() {
    let (_child, p) = start_simulate().await;
    let trainer = p.with_account.first().expect("a seeded Lark user").clone();
    let token = user_token(&p, &trainer, CALENDAR_SCOPES).await;
    let post = reqwest::Method::POST;

    let (status, primary) = call(
        &p.lark_url,
        post.clone(),
        "/open-apis/calendar/v4/calendars/primary",
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{primary}");
    let calendar = primary["data"]["calendars"][0]["calendar"]["calendar_id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = format!("/open-apis/calendar/v4/calendars/{calendar}/events");
    let start = chrono::Utc::now().timestamp() + 86_400;
    let event = json!({
        "summary": "Remote Training: Acme",
        "need_notification": false,
        "start_time": { "timestamp": start.to_string(), "timezone": "UTC" },
        "end_time": { "timestamp": (start + 3600).to_string(), "timezone": "UTC" },
        "vchat": { "vc_type": "third_party", "icon_type": "vc", "meeting_url": "https://vc.larksuite.com/j/1" },
        "reminders": [{ "minutes": 15 }],
    });
    let keyed = format!("{events}?idempotency_key={}", "k".repeat(40));
    let (status, first) = call(
        &p.lark_url,
        post.clone(),
        &keyed,
        &token,
        Some(event.clone()),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = call(
        &p.lark_url,
        post.clone(),
        &keyed,
        &token,
        Some(event.clone()),
    )
    .await;
    let event_id = first["data"]["event"]["event_id"].as_str().unwrap();
    assert_eq!(
        second["data"]["event"]["event_id"], event_id,
        "same key, same event"
    );
    let (status, short) = call(
        &p.lark_url,
        post.clone(),
        &format!("{events}?idempotency_key=short"),
        &token,
        Some(event),
    )
    .await;
    assert_eq!((status, short["code"].as_i64()), (400, Some(190002)));

    let (status, guests) = call(
        &p.lark_url,
        post.clone(),
        &format!("{events}/{event_id}/attendees"),
        &token,
        Some(json!({
            "attendees": [{ "type": "third_party", "third_party_email": "merchant@shop.example" }],
            "need_notification": true,
        })),
    )
    .await;
    assert_eq!(status, 200, "{guests}");
    assert_eq!(
        guests["data"]["attendees"][0]["third_party_email"],
        "merchant@shop.example"
    );
    let (status, moved) = call(
        &p.lark_url,
        reqwest::Method::PATCH,
        &format!("{events}/{event_id}"),
        &token,
        Some(json!({
            "start_time": { "timestamp": (start + 600).to_string(), "timezone": "UTC" },
            "end_time": { "timestamp": (start + 4200).to_string(), "timezone": "UTC" },
        })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        moved["data"]["event"]["start_time"]["timestamp"],
        (start + 600).to_string()
    );
    let delete = format!("{events}/{event_id}?need_notification=false");
    let (status, _) = call(&p.lark_url, reqwest::Method::DELETE, &delete, &token, None).await;
    assert_eq!(status, 200);
    let (status, again) = call(&p.lark_url, reqwest::Method::DELETE, &delete, &token, None).await;
    assert_eq!((status, again["code"].as_i64()), (403, Some(193003)));
}

#[tokio::test]
async fn simulate_maps_emails_reserves_for_an_owner_and_posts_to_a_chat() {
    let (_child, p) = start_simulate().await;
    let trainer = p.with_account.first().expect("a seeded Lark user").clone();
    let stranger = p
        .without_account
        .first()
        .expect("a trainer without Lark")
        .clone();
    let tenant = tenant_token(&p).await;
    let post = reqwest::Method::POST;

    let (status, ids) = call(
        &p.lark_url,
        post.clone(),
        "/open-apis/contact/v3/users/batch_get_id?user_id_type=open_id",
        &tenant,
        Some(json!({ "emails": [trainer, stranger], "include_resigned": false })),
    )
    .await;
    assert_eq!(status, 200, "{ids}");
    let list = ids["data"]["user_list"].as_array().unwrap();
    let owner = list[0]["user_id"].as_str().unwrap().to_string();
    assert!(owner.starts_with("ou_"));
    assert!(
        list[1].get("user_id").is_none(),
        "no Lark account: {}",
        list[1]
    );

    let end = (chrono::Utc::now().timestamp() + 86_400).to_string();
    let (status, applied) = call(
        &p.lark_url,
        post.clone(),
        "/open-apis/vc/v1/reserves/apply",
        &tenant,
        Some(json!({ "end_time": end, "owner_id": owner, "meeting_settings": { "topic": "T" } })),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        applied["data"]["reserve"]["reserve_user_id"],
        owner.as_str()
    );
    let (status, refused) = call(
        &p.lark_url,
        post.clone(),
        "/open-apis/vc/v1/reserves/apply",
        &tenant,
        Some(json!({ "end_time": end })),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_i64()),
        (400, Some(121003)),
        "the tenant token needs owner_id"
    );

    let (status, chat) = call(
        &p.lark_url,
        post.clone(),
        "/open-apis/im/v1/chats",
        &tenant,
        Some(json!({ "name": "Alerts", "chat_mode": "group", "chat_type": "private" })),
    )
    .await;
    assert_eq!(status, 200, "{chat}");
    let chat_id = chat["data"]["chat_id"].as_str().unwrap();
    let message = |to: &str| json!({ "receive_id": to, "msg_type": "text", "content": "{\"text\":\"alert\"}", "uuid": to });
    let path = "/open-apis/im/v1/messages?receive_id_type=chat_id";
    let (status, sent) = call(
        &p.lark_url,
        post.clone(),
        path,
        &tenant,
        Some(message(chat_id)),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["data"]["chat_id"], chat_id);
    let (status, unknown) = call(&p.lark_url, post, path, &tenant, Some(message("oc_none"))).await;
    assert_eq!((status, unknown["code"].as_i64()), (400, Some(230034)));
}

#[tokio::test]
async fn simulate_prints_an_alerts_chat_and_how_to_drive_a_meeting() {
    let (_child, p) = start_simulate().await;
    let tenant = tenant_token(&p).await;
    let chat = p.alerts_chat.clone().expect("an alerts.lark_chat_id");
    assert!(chat.starts_with("oc_"), "{chat}");
    let (status, member) = call(
        &p.lark_url,
        reqwest::Method::GET,
        &format!("/open-apis/im/v1/chats/{chat}/members/is_in_chat"),
        &tenant,
        None,
    )
    .await;
    assert_eq!(
        (status, member["data"]["is_in_chat"].as_bool()),
        (200, Some(true))
    );

    // A reservation of a seeded trainer, then its meeting driven with the printed
    // endpoints (their paths taken from the curl lines, MEETING replaced).
    let trainer = p.with_account.first().expect("a seeded Lark user").clone();
    let token = user_token(&p, &trainer, "vc:reserve").await;
    let end = (chrono::Utc::now().timestamp() + 3600).to_string();
    let (status, applied) = call(
        &p.lark_url,
        reqwest::Method::POST,
        "/open-apis/vc/v1/reserves/apply",
        &token,
        Some(json!({ "end_time": end })),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    let meeting_no = applied["data"]["reserve"]["meeting_no"].as_str().unwrap();
    let printed = |part: &str| -> (String, Option<String>) {
        let line = p
            .curl
            .iter()
            .find(|l| l.contains(part))
            .unwrap_or_else(|| panic!("a curl line with {part}: {:?}", p.curl));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .replace("MEETING", meeting_no);
        let body = line
            .split_once(" -d '")
            .map(|(_, b)| b.trim_end_matches('\'').replace("MEETING", meeting_no));
        (url, body)
    };
    for part in ["/start", "/join -d '{\"host\"", "/join -d '{\"guest\""] {
        let (url, body) = printed(part);
        let response = http()
            .post(url)
            .body(body.unwrap_or_default())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{part}");
    }
    let (url, _) = printed("/sim/events");
    let events: Value = http().get(url).send().await.unwrap().json().await.unwrap();
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "vc.meeting.meeting_started_v1",
            "vc.meeting.join_meeting_v1",
            "vc.meeting.join_meeting_v1"
        ]
    );
}
