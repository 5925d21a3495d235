//! Wire-level tests of the Lark simulator, with a plain HTTP client (what a third-party
//! client sees). The real client's behaviour against it is tested in `crate::lark`.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

use super::*;
use crate::test_support::{eventually, FrozenClock};

const REDIRECT: &str = "https://bridge.example.com/oauth/lark/callback";
const SCOPES: &str = "vc:reserve offline_access contact:user.email:readonly";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn challenge_of(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

const VERIFIER: &str = "verifier-0123456789-0123456789-0123456789-abc";

/// GET the authorize endpoint with `extra` query pairs; returns (status, Location, body).
async fn authorize_with(sim: &LarkSim, extra: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut url =
        url::Url::parse(&format!("{}/open-apis/authen/v1/authorize", sim.base_url())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", LARK_APP_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", SCOPES)
        .append_pair("state", "xyz")
        .append_pair("code_challenge", &challenge_of(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    let response = http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (status, location, response.text().await.unwrap())
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn code_for(sim: &LarkSim, email: &str) -> String {
    let (status, location, _) = authorize_with(sim, &[("sim_user", email)]).await;
    assert_eq!(status, 302);
    query_of(&location.unwrap())["code"].clone()
}

async fn post_json(
    sim: &LarkSim,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (u16, HeaderMap, Value) {
    let mut request = http().post(format!("{}{path}", sim.base_url())).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

async fn v2(sim: &LarkSim, body: Value) -> (u16, Value) {
    let (status, _, body) = post_json(sim, "/open-apis/authen/v2/oauth/token", None, body).await;
    (status, body)
}

fn code_grant(code: &str) -> Value {
    json!({
        "grant_type": "authorization_code",
        "client_id": LARK_APP_ID,
        "client_secret": LARK_APP_SECRET,
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    })
}

fn refresh_grant(token: &str) -> Value {
    json!({
        "grant_type": "refresh_token",
        "client_id": LARK_APP_ID,
        "client_secret": LARK_APP_SECRET,
        "refresh_token": token,
    })
}

#[tokio::test]
async fn authorize_page_lists_users_denies_and_validates() {
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana <Trainer>");
    let (status, _, page) = authorize_with(&sim, &[]).await;
    assert_eq!(status, 200);
    assert!(page.contains("sim_user=ana%40example.com"), "{page}");
    assert!(page.contains("Ana &lt;Trainer&gt;"));

    let (status, location, _) = authorize_with(&sim, &[("sim_deny", "1")]).await;
    assert_eq!(status, 302);
    let q = query_of(&location.unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "xyz");

    let (status, _, _) = authorize_with(&sim, &[("sim_user", "nobody@example.com")]).await;
    assert_eq!(status, 400);
    let bad_client = format!(
        "{}/open-apis/authen/v1/authorize?client_id=cli_other&response_type=code&redirect_uri={REDIRECT}",
        sim.base_url()
    );
    assert_eq!(
        http()
            .get(bad_client)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
}

#[tokio::test]
async fn v2_token_endpoint_speaks_lark_wire_format() {
    let sim = LarkSim::start(0).await.unwrap();
    let open_id = sim.add_user("ana@example.com", "Ana");

    let (status, body) = v2(&sim, code_grant(&code_for(&sim, "ana@example.com").await)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["refresh_token_expires_in"], 604800);
    assert_eq!(body["scope"], SCOPES);
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(access.starts_with("u-") && access.len() >= 200 && access.matches('.').count() == 2);
    assert!(refresh.starts_with("ur-") && refresh.len() >= 200);
    assert_eq!(
        sim.current_tokens(&open_id),
        Some((access.to_string(), Some(refresh.to_string())))
    );

    // Form encoding is accepted too (standard OAuth libraries send it).
    let code = code_for(&sim, "ana@example.com").await;
    let form = http()
        .post(format!(
            "{}/open-apis/authen/v2/oauth/token",
            sim.base_url()
        ))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", LARK_APP_ID),
            ("client_secret", LARK_APP_SECRET),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 200);

    let mut wrong_secret = code_grant("x");
    wrong_secret["client_secret"] = "nope".into();
    let (status, body) = v2(&sim, wrong_secret).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(20002)));
    assert_eq!(body["error"], "invalid_client");

    let mut wrong_redirect = code_grant(&code_for(&sim, "ana@example.com").await);
    wrong_redirect["redirect_uri"] = "https://evil.example.com/cb".into();
    let (status, body) = v2(&sim, wrong_redirect).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(20071)));

    let (_, body) = v2(
        &sim,
        json!({ "grant_type": "authorization_code", "client_id": LARK_APP_ID }),
    )
    .await;
    assert_eq!(body["code"], 20001);
    let mut other_grant = code_grant("x");
    other_grant["grant_type"] = "password".into();
    assert_eq!(v2(&sim, other_grant).await.1["code"], 20036);
    let (_, body) = v2(&sim, code_grant("unknown-code")).await;
    assert_eq!(
        (body["code"].as_i64(), body["error"].as_str()),
        (Some(20003), Some("invalid_grant"))
    );
}

#[tokio::test]
async fn refresh_tokens_are_single_use_and_need_offline_access() {
    let sim = LarkSim::start(0).await.unwrap();
    let open_id = sim.add_user("ana@example.com", "Ana");
    let (_, first) = v2(&sim, code_grant(&code_for(&sim, "ana@example.com").await)).await;
    let old = first["refresh_token"].as_str().unwrap().to_string();

    let (status, second) = v2(&sim, refresh_grant(&old)).await;
    assert_eq!(status, 200);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, reuse) = v2(&sim, refresh_grant(&old)).await;
    assert_eq!((status, reuse["code"].as_i64()), (400, Some(20073)));

    sim.revoke(&open_id);
    let (_, revoked) = v2(
        &sim,
        refresh_grant(second["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(revoked["code"], 20064);

    // Without offline_access there is no refresh token.
    let (status, location, _) = authorize_with(
        &sim,
        &[("sim_user", "ana@example.com"), ("scope", "vc:reserve")],
    )
    .await;
    assert_eq!(status, 302);
    let code = query_of(&location.unwrap())["code"].clone();
    let (_, body) = v2(&sim, code_grant(&code)).await;
    // The later `scope` pair wins in the query map: only vc:reserve was granted.
    assert_eq!(body["scope"], "vc:reserve");
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test(start_paused = true)]
async fn codes_and_tokens_expire_on_the_simulator_clock() {
    let _frozen = FrozenClock::hold();
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana");
    sim.set_token_lifetimes(60, 120);
    let stale_code = code_for(&sim, "ana@example.com").await;
    let (_, grant) = v2(&sim, code_grant(&code_for(&sim, "ana@example.com").await)).await;
    assert_eq!(
        (
            grant["expires_in"].as_i64(),
            grant["refresh_token_expires_in"].as_i64()
        ),
        (Some(60), Some(120))
    );
    let access = grant["access_token"].as_str().unwrap().to_string();

    tokio::time::advance(CODE_LIFETIME + Duration::from_secs(1)).await;
    let (_, body) = v2(&sim, code_grant(&stale_code)).await;
    assert_eq!(body["code"], 20004);
    let info = http()
        .get(format!("{}/open-apis/authen/v1/user_info", sim.base_url()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status().as_u16(), 401);
    assert_eq!(info.json::<Value>().await.unwrap()["code"], 99991677);
    let (_, body) = v2(
        &sim,
        refresh_grant(grant["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(body["code"], 20037);
}

#[tokio::test]
async fn v1_oidc_endpoints_need_the_app_token_and_wrap_data() {
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana");
    let code = code_for(&sim, "ana@example.com").await;
    let grant = json!({ "grant_type": "authorization_code", "code": code });
    let (status, _, body) = post_json(
        &sim,
        "/open-apis/authen/v1/oidc/access_token",
        None,
        grant.clone(),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99991661)));

    let (_, _, app) = post_json(
        &sim,
        "/open-apis/auth/v3/app_access_token/internal",
        None,
        json!({ "app_id": LARK_APP_ID, "app_secret": LARK_APP_SECRET }),
    )
    .await;
    assert_eq!(app["expire"], 7200);
    let app_token = app["app_access_token"].as_str().unwrap();
    let (status, _, body) = post_json(
        &sim,
        "/open-apis/authen/v1/oidc/access_token",
        Some(app_token),
        grant,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["msg"], "success");
    assert_eq!(body["data"]["refresh_expires_in"], 604800);
    let v1_refresh = body["data"]["refresh_token"].as_str().unwrap();
    // The v2 endpoint only takes refresh tokens it issued (Lark docs: 20026).
    let (_, refused) = v2(&sim, refresh_grant(v1_refresh)).await;
    assert_eq!(refused["code"], 20026);
    let (status, _, body) = post_json(
        &sim,
        "/open-apis/authen/v1/oidc/refresh_access_token",
        Some(app_token),
        json!({ "grant_type": "refresh_token", "refresh_token": v1_refresh }),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (200, Some(0)));
}

#[tokio::test]
async fn user_info_fields_follow_the_granted_scopes() {
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user_with("ana@example.com", "Ana", Some("ana@corp.example.com"));
    let get_info = |token: String| {
        let url = format!("{}/open-apis/authen/v1/user_info", sim.base_url());
        async move {
            http()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let (_, with_email) = v2(&sim, code_grant(&code_for(&sim, "ana@example.com").await)).await;
    let info = get_info(with_email["access_token"].as_str().unwrap().to_string()).await;
    assert_eq!(info["data"]["email"], "ana@example.com");
    assert_eq!(info["data"]["enterprise_email"], "ana@corp.example.com");
    assert!(info["data"]["open_id"].as_str().unwrap().starts_with("ou_"));

    let (_, location, _) = authorize_with(
        &sim,
        &[
            ("sim_user", "ana@corp.example.com"),
            ("scope", "vc:reserve offline_access"),
        ],
    )
    .await;
    let (_, without) = v2(&sim, code_grant(&query_of(&location.unwrap())["code"])).await;
    let info = get_info(without["access_token"].as_str().unwrap().to_string()).await;
    assert_eq!(info["code"], 0);
    assert!(info["data"].get("email").is_none(), "{info}");
}

#[tokio::test]
async fn a_user_can_grant_fewer_scopes_and_sign_in_from_another_tenant() {
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana");
    let (_, location, _) = authorize_with(
        &sim,
        &[
            ("sim_user", "ana@example.com"),
            ("sim_scope", "offline_access contact:user.email:readonly"),
            ("sim_tenant", "tenant-elsewhere"),
        ],
    )
    .await;
    let (status, body) = v2(&sim, code_grant(&query_of(&location.unwrap())["code"])).await;
    assert_eq!(status, 200, "{body}");
    // The granted scope, as Lark returns it: the asked ones the user left ticked.
    assert_eq!(body["scope"], "offline_access contact:user.email:readonly");
    let info: Value = http()
        .get(format!("{}/open-apis/authen/v1/user_info", sim.base_url()))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["data"]["tenant_key"], "tenant-elsewhere");
    // A refresh keeps the tenant and the scope.
    let (_, refreshed) = v2(
        &sim,
        json!({
            "grant_type": "refresh_token",
            "client_id": LARK_APP_ID,
            "client_secret": LARK_APP_SECRET,
            "refresh_token": body["refresh_token"],
        }),
    )
    .await;
    assert_eq!(refreshed["scope"], body["scope"]);

    let code = code_for(&sim, "ana@example.com").await;
    let (_, own) = v2(&sim, code_grant(&code)).await;
    let info: Value = http()
        .get(format!("{}/open-apis/authen/v1/user_info", sim.base_url()))
        .bearer_auth(own["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["data"]["tenant_key"], SIM_TENANT_KEY);
}

#[tokio::test]
async fn tenant_token_is_reused_while_it_has_thirty_minutes_left() {
    let sim = LarkSim::start(0).await.unwrap();
    let creds = json!({ "app_id": LARK_APP_ID, "app_secret": LARK_APP_SECRET });
    let (_, _, a) = post_json(
        &sim,
        "/open-apis/auth/v3/tenant_access_token/internal",
        None,
        creds.clone(),
    )
    .await;
    let (_, _, b) = post_json(
        &sim,
        "/open-apis/auth/v3/tenant_access_token/internal",
        None,
        creds,
    )
    .await;
    assert_eq!(a["msg"], "ok");
    assert_eq!(a["tenant_access_token"], b["tenant_access_token"]);
    assert!(a["tenant_access_token"].as_str().unwrap().starts_with("t-"));
    let (status, _, bad) = post_json(
        &sim,
        "/open-apis/auth/v3/tenant_access_token/internal",
        None,
        json!({ "app_id": LARK_APP_ID, "app_secret": "wrong" }),
    )
    .await;
    assert_eq!((status, bad["code"].as_i64()), (400, Some(10014)));
}

#[tokio::test(start_paused = true)]
async fn apply_is_rate_limited_per_app_with_a_reset_header() {
    let _frozen = FrozenClock::hold();
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana");
    sim.set_rate_limits(2, 1000);
    let (_, grant) = v2(&sim, code_grant(&code_for(&sim, "ana@example.com").await)).await;
    let token = grant["access_token"].as_str().unwrap().to_string();
    let end = (unix_now() + 3600).to_string();
    let apply = || {
        post_json(
            &sim,
            "/open-apis/vc/v1/reserves/apply",
            Some(&token),
            json!({ "end_time": end }),
        )
    };
    assert_eq!(apply().await.0, 200);
    assert_eq!(apply().await.0, 200);
    let (status, headers, body) = apply().await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], 99991400);
    assert_eq!(body["msg"], "request trigger frequency limit");
    assert_eq!(headers["x-ogw-ratelimit-reset"], "1");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(apply().await.0, 200);
    eventually("three reserves", || sim.reserves().len() == 3).await;
}

#[tokio::test]
async fn reserve_validation_and_shapes() {
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana");
    let (_, grant) = v2(&sim, code_grant(&code_for(&sim, "ana@example.com").await)).await;
    let token = grant["access_token"].as_str().unwrap();
    let path = "/open-apis/vc/v1/reserves/apply";

    let (status, _, body) = post_json(
        &sim,
        path,
        Some(token),
        json!({ "end_time": unix_now() + 3600 }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (200, Some(0)),
        "a number, as the official SDK sends it: {body}"
    );
    let (status, _, body) =
        post_json(&sim, path, Some(token), json!({ "end_time": "tomorrow" })).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(99992402)),
        "not a number at all"
    );
    let far = (unix_now() + 31 * 86_400).to_string();
    let (status, _, body) = post_json(&sim, path, Some(token), json!({ "end_time": far })).await;
    assert_eq!(
        (status, body["code"].as_i64(), body["msg"].as_str()),
        (400, Some(121003), Some("param error"))
    );
    let (status, _, body) = post_json(&sim, path, None, json!({})).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99991661)));

    let end = unix_now() + 86_400;
    let (status, _, body) = post_json(
        &sim,
        path,
        Some(token),
        json!({ "end_time": end.to_string(), "meeting_settings": { "topic": "T" } }),
    )
    .await;
    assert_eq!(status, 200);
    let reserve = &body["data"]["reserve"];
    assert_eq!(reserve["end_time"], end.to_string());
    assert_eq!(
        reserve["url"],
        format!(
            "https://vc.larksuite.com/j/{}",
            reserve["meeting_no"].as_str().unwrap()
        )
    );
    assert_eq!(reserve["id"].as_str().unwrap().len(), 19);

    let id = reserve["id"].as_str().unwrap();
    let unknown = http()
        .get(format!("{}/open-apis/vc/v1/reserves/1234", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["code"], 121004);
    let deleted = http()
        .delete(format!("{}/open-apis/vc/v1/reserves/{id}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({ "code": 0, "msg": "success", "data": {} })
    );
    assert_eq!(
        sim.requests()
            .count(&Method::DELETE, "/open-apis/vc/v1/reserves/"),
        1
    );
}

#[tokio::test]
async fn messages_need_the_tenant_token_and_dedupe_by_uuid() {
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana");
    let path = "/open-apis/im/v1/messages?receive_id_type=email";
    let msg = json!({
        "receive_id": "ana@example.com",
        "msg_type": "text",
        "content": "{\"text\":\"hello\"}",
        "uuid": "u-1",
    });
    let (status, _, body) = post_json(&sim, path, Some("t-bogus"), msg.clone()).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(99991663)));

    let (_, _, tenant) = post_json(
        &sim,
        "/open-apis/auth/v3/tenant_access_token/internal",
        None,
        json!({ "app_id": LARK_APP_ID, "app_secret": LARK_APP_SECRET }),
    )
    .await;
    let t = tenant["tenant_access_token"].as_str().unwrap();
    let (status, _, first) = post_json(&sim, path, Some(t), msg.clone()).await;
    assert_eq!(status, 200);
    assert!(first["data"]["message_id"]
        .as_str()
        .unwrap()
        .starts_with("om_"));
    assert_eq!(first["data"]["body"]["content"], "{\"text\":\"hello\"}");
    let (_, _, second) = post_json(&sim, path, Some(t), msg).await;
    assert_eq!(second["data"]["message_id"], first["data"]["message_id"]);
    assert_eq!(sim.bot_messages().len(), 1);
    assert_eq!(sim.bot_messages()[0].text, "hello");

    let (status, _, body) = post_json(
        &sim,
        path,
        Some(t),
        json!({ "receive_id": "ghost@example.com", "msg_type": "text", "content": "{\"text\":\"x\"}" }),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(230013)));
}

// ---------------------------------------------------------------------------------------
// Calendar, contact, tenant-token reserves and group chats.

const CALENDAR_SCOPES: &str =
    "vc:reserve offline_access calendar:calendar calendar:calendar:readonly";

/// A user access token for `email` granted `scope`.
pub(super) async fn user_token(sim: &LarkSim, email: &str, scope: &str) -> String {
    let mut url =
        url::Url::parse(&format!("{}/open-apis/authen/v1/authorize", sim.base_url())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", LARK_APP_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge_of(VERIFIER))
        .append_pair("code_challenge_method", "S256")
        .append_pair("sim_user", email);
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let code = query_of(&location)["code"].clone();
    let (status, grant) = v2(sim, code_grant(&code)).await;
    assert_eq!(status, 200, "{grant}");
    grant["access_token"].as_str().unwrap().to_string()
}

pub(super) async fn tenant_token(sim: &LarkSim) -> String {
    let (_, _, body) = post_json(
        sim,
        "/open-apis/auth/v3/tenant_access_token/internal",
        None,
        json!({ "app_id": LARK_APP_ID, "app_secret": LARK_APP_SECRET }),
    )
    .await;
    body["tenant_access_token"].as_str().unwrap().to_string()
}

/// Sends `method` to `path` with a bearer token and an optional JSON body.
pub(super) async fn call(
    sim: &LarkSim,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Creates an event on `calendar` with `token` (no idempotency key); returns its path.
async fn create_event(sim: &LarkSim, calendar: &str, token: &str, start: i64, end: i64) -> String {
    let (status, created) = call(
        sim,
        Method::POST,
        &events_path(calendar),
        token,
        Some(event_body(start, end)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let event_id = created["data"]["event"]["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    format!("{}/{event_id}", events_path(calendar))
}

fn events_path(calendar_id: &str) -> String {
    format!("/open-apis/calendar/v4/calendars/{calendar_id}/events")
}

fn event_body(start: i64, end: i64) -> Value {
    json!({
        "summary": "Remote Training: Acme",
        "description": "Join: https://vc.larksuite.com/j/123456789",
        "need_notification": false,
        "start_time": { "timestamp": start.to_string(), "timezone": "Europe/Paris" },
        "end_time": { "timestamp": end.to_string(), "timezone": "Europe/Paris" },
        "vchat": {
            "vc_type": "third_party",
            "icon_type": "vc",
            "meeting_url": "https://vc.larksuite.com/j/123456789",
            "description": "Join the Lark meeting",
        },
        "reminders": [{ "minutes": 15 }],
        "attendee_ability": "can_see_others",
        "free_busy_status": "busy",
    })
}

const KEY: &str = "booking-a0X000000000001AAA-reserve-6911188411932033028";

#[tokio::test]
async fn primary_calendar_is_per_user_and_needs_a_calendar_read_scope() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    let bo = sim.add_user("bo@example.com", "Bo");
    let ana_token = user_token(&sim, "ana@example.com", CALENDAR_SCOPES).await;
    let bo_token = user_token(&sim, "bo@example.com", CALENDAR_SCOPES).await;
    let path = "/open-apis/calendar/v4/calendars/primary";
    let (status, body) = call(&sim, Method::POST, path, &ana_token, None).await;
    assert_eq!((status, body["code"].as_i64()), (200, Some(0)), "{body}");
    let entry = &body["data"]["calendars"][0];
    assert_eq!(entry["user_id"], ana);
    assert_eq!(entry["calendar"]["type"], "primary");
    assert_eq!(entry["calendar"]["role"], "owner");
    assert_eq!(
        entry["calendar"]["calendar_id"],
        sim.primary_calendar_id(&ana)
    );
    let (_, again) = call(&sim, Method::POST, path, &ana_token, None).await;
    assert_eq!(again["data"], body["data"], "one primary calendar per user");
    let (_, other) = call(&sim, Method::POST, path, &bo_token, None).await;
    assert_eq!(
        other["data"]["calendars"][0]["calendar"]["calendar_id"],
        sim.primary_calendar_id(&bo)
    );
    assert_ne!(sim.primary_calendar_id(&ana), sim.primary_calendar_id(&bo));

    let vc_only = user_token(&sim, "ana@example.com", "vc:reserve").await;
    let (status, body) = call(&sim, Method::POST, path, &vc_only, None).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99991679)));
    let (status, body) = call(&sim, Method::POST, path, "u-bogus", None).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(99991668)));
}

#[tokio::test]
async fn event_create_is_idempotent_per_key_and_calendar() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    let token = user_token(&sim, "ana@example.com", CALENDAR_SCOPES).await;
    let calendar = sim.primary_calendar_id(&ana);
    let start = unix_now() + 86_400;
    let with_key = |key: &str| format!("{}?idempotency_key={key}", events_path(&calendar));

    let (status, first) = call(
        &sim,
        Method::POST,
        &with_key(KEY),
        &token,
        Some(event_body(start, start + 3600)),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let event = &first["data"]["event"];
    assert!(event["event_id"].as_str().unwrap().ends_with("_0"));
    assert_eq!(event["organizer_calendar_id"], calendar);
    assert_eq!(
        event["start_time"],
        json!({ "timestamp": start.to_string(), "timezone": "Europe/Paris" })
    );
    assert_eq!(
        event["vchat"]["meeting_url"],
        "https://vc.larksuite.com/j/123456789"
    );
    assert_eq!(event["reminders"], json!([{ "minutes": 15 }]));

    // A retry with the same key (even with another body) answers the same event.
    let (status, second) = call(
        &sim,
        Method::POST,
        &with_key(KEY),
        &token,
        Some(event_body(start + 60, start + 7200)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(second["data"]["event"]["event_id"], event["event_id"]);
    assert_eq!(sim.calendar_events().len(), 1, "never a second event");
    let held = &sim.calendar_events()[0];
    assert_eq!(
        (held.start.timestamp, held.end.timestamp),
        (start, start + 3600)
    );
    assert!(!held.need_notification);
    assert_eq!(held.idempotency_key.as_deref(), Some(KEY));

    // Another key, or no key, makes another event.
    let (_, third) = call(
        &sim,
        Method::POST,
        &with_key(&"k".repeat(32)),
        &token,
        Some(event_body(start, start + 60)),
    )
    .await;
    assert_ne!(third["data"]["event"]["event_id"], event["event_id"]);
    let (status, _) = call(
        &sim,
        Method::POST,
        &events_path(&calendar),
        &token,
        Some(event_body(start, start + 60)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sim.calendar_events().len(), 3);

    for bad_key in ["k".repeat(31), "k".repeat(129)] {
        let (status, body) = call(
            &sim,
            Method::POST,
            &with_key(&bad_key),
            &token,
            Some(event_body(start, start + 60)),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(190002)),
            "{bad_key}"
        );
    }
    assert_eq!(sim.calendar_events().len(), 3);
}

#[tokio::test]
async fn event_create_validates_times_and_fields() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    let token = user_token(&sim, "ana@example.com", CALENDAR_SCOPES).await;
    let path = events_path(&sim.primary_calendar_id(&ana));
    let start = unix_now() + 3600;
    let mut numeric = event_body(start, start + 60);
    numeric["start_time"]["timestamp"] = json!(start);
    let mut inverted = event_body(start, start + 60);
    inverted["end_time"]["timestamp"] = json!((start - 60).to_string());
    let mut no_end = event_body(start, start + 60);
    no_end.as_object_mut().unwrap().remove("end_time");
    let mut bad_vchat = event_body(start, start + 60);
    bad_vchat["vchat"]["vc_type"] = json!("zoom");
    for (what, body) in [
        ("a numeric timestamp", numeric),
        ("end before start", inverted),
        ("no end", no_end),
        ("an unknown vc_type", bad_vchat),
    ] {
        let (status, answer) = call(&sim, Method::POST, &path, &token, Some(body)).await;
        assert_eq!(
            (status, answer["code"].as_i64()),
            (400, Some(190002)),
            "{what}"
        );
    }
    assert!(sim.calendar_events().is_empty());
    let no_write_scope = user_token(&sim, "ana@example.com", "calendar:calendar:readonly").await;
    let (status, body) = call(
        &sim,
        Method::POST,
        &path,
        &no_write_scope,
        Some(event_body(start, start + 60)),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99991679)));
}

#[tokio::test]
async fn calendars_and_events_belong_to_their_owner() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    sim.add_user("bo@example.com", "Bo");
    let ana_token = user_token(&sim, "ana@example.com", CALENDAR_SCOPES).await;
    let bo_token = user_token(&sim, "bo@example.com", CALENDAR_SCOPES).await;
    let calendar = sim.primary_calendar_id(&ana);
    let start = unix_now() + 3600;
    let event_path = create_event(&sim, &calendar, &ana_token, start, start + 60).await;

    let (status, body) = call(
        &sim,
        Method::POST,
        &events_path("nobody@group.calendar.larksuite.com"),
        &ana_token,
        Some(event_body(start, start + 60)),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (404, Some(191000)));
    let (status, body) = call(
        &sim,
        Method::POST,
        &events_path(&calendar),
        &bo_token,
        Some(event_body(start, start + 60)),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (403, Some(191002)));
    let (status, body) = call(&sim, Method::GET, &event_path, &bo_token, None).await;
    assert_eq!((status, body["code"].as_i64()), (403, Some(191002)));
    let (status, body) = call(
        &sim,
        Method::GET,
        &format!("{}/nope_0", events_path(&calendar)),
        &ana_token,
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (404, Some(193001)));

    // The owner's role drops to reader: no new events, no changes.
    sim.set_calendar_read_only(&ana, true);
    let (status, body) = call(
        &sim,
        Method::POST,
        &events_path(&calendar),
        &ana_token,
        Some(event_body(start, start + 60)),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (403, Some(191002)));
    let (status, body) = call(
        &sim,
        Method::PATCH,
        &event_path,
        &ana_token,
        Some(json!({ "summary": "x" })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (403, Some(193002)));
    sim.set_calendar_read_only(&ana, false);
    let (status, _) = call(
        &sim,
        Method::PATCH,
        &event_path,
        &ana_token,
        Some(json!({ "summary": "x" })),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn patch_moves_start_and_end_together_and_delete_marks_the_event() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    let token = user_token(&sim, "ana@example.com", CALENDAR_SCOPES).await;
    let calendar = sim.primary_calendar_id(&ana);
    let start = unix_now() + 3600;
    let event_path = create_event(&sim, &calendar, &token, start, start + 3600).await;

    // Only one of the two: ignored.
    let (status, body) = call(
        &sim,
        Method::PATCH,
        &event_path,
        &token,
        Some(json!({
            "start_time": { "timestamp": (start + 600).to_string(), "timezone": "UTC" },
        })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["event"]["start_time"]["timestamp"],
        start.to_string()
    );
    let (status, body) = call(
        &sim,
        Method::PATCH,
        &event_path,
        &token,
        Some(json!({
            "start_time": { "timestamp": (start + 600).to_string(), "timezone": "UTC" },
            "end_time": { "timestamp": (start + 4200).to_string(), "timezone": "UTC" },
            "need_notification": false,
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, got) = call(&sim, Method::GET, &event_path, &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        got["data"]["event"]["start_time"],
        json!({ "timestamp": (start + 600).to_string(), "timezone": "UTC" })
    );
    assert_eq!(
        got["data"]["event"]["end_time"]["timestamp"],
        (start + 4200).to_string()
    );
    assert_eq!(
        got["data"]["event"]["summary"], "Remote Training: Acme",
        "untouched fields stay"
    );
    let (status, body) = call(
        &sim,
        Method::PATCH,
        &event_path,
        &token,
        Some(json!({
            "start_time": { "timestamp": (start + 600).to_string() },
            "end_time": { "timestamp": start.to_string() },
        })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(190002)));

    let (status, body) = call(
        &sim,
        Method::DELETE,
        &format!("{event_path}?need_notification=false"),
        &token,
        None,
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({ "code": 0, "msg": "success", "data": {} }))
    );
    let held = &sim.calendar_events()[0];
    assert!(held.deleted);
    assert_eq!(held.deleted_with_notification, Some(false));
    assert_eq!(held.patches, 2);
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = call(&sim, method.clone(), &event_path, &token, None).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (403, Some(193003)),
            "{method}"
        );
    }
    let (status, body) = call(
        &sim,
        Method::DELETE,
        &format!("{event_path}?need_notification=no"),
        &token,
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(190002)));
    assert_eq!(
        sim.requests()
            .count(&Method::DELETE, "/open-apis/calendar/v4/calendars/"),
        3
    );
}

#[tokio::test]
async fn attendees_are_added_once_with_their_notification_choice() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    let token = user_token(&sim, "ana@example.com", CALENDAR_SCOPES).await;
    let calendar = sim.primary_calendar_id(&ana);
    let start = unix_now() + 3600;
    let event_path = create_event(&sim, &calendar, &token, start, start + 60).await;
    let path = format!("{event_path}/attendees");
    let guest = json!({
        "attendees": [{ "type": "third_party", "third_party_email": "merchant@shop.example" }],
        "need_notification": true,
    });
    let (status, first) = call(&sim, Method::POST, &path, &token, Some(guest.clone())).await;
    assert_eq!(status, 200, "{first}");
    let added = &first["data"]["attendees"][0];
    assert_eq!(added["type"], "third_party");
    assert_eq!(added["third_party_email"], "merchant@shop.example");
    assert_eq!(added["is_external"], true);
    assert!(added["attendee_id"]
        .as_str()
        .unwrap()
        .starts_with("third_party_"));
    let (_, again) = call(&sim, Method::POST, &path, &token, Some(guest)).await;
    assert_eq!(
        again["data"]["attendees"][0]["attendee_id"],
        added["attendee_id"]
    );
    let attendees = &sim.calendar_events()[0].attendees;
    assert_eq!(attendees.len(), 1, "the same guest is invited once");
    assert!(attendees[0].notified);

    let (status, body) = call(
        &sim,
        Method::POST,
        &path,
        &token,
        Some(json!({
            "attendees": [{ "type": "third_party", "third_party_email": "not-an-email" }],
        })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(190002)));
}

#[tokio::test(start_paused = true)]
async fn calendar_calls_are_rate_limited_per_method() {
    let _frozen = FrozenClock::hold();
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    let token = user_token(&sim, "ana@example.com", CALENDAR_SCOPES).await;
    sim.set_api_rate_limits(2, 1000);
    let primary = "/open-apis/calendar/v4/calendars/primary";
    assert_eq!(call(&sim, Method::POST, primary, &token, None).await.0, 200);
    assert_eq!(call(&sim, Method::POST, primary, &token, None).await.0, 200);
    let response = http()
        .post(format!("{}{primary}", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["x-ogw-ratelimit-reset"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 190005);
    // Another method has its own window.
    let start = unix_now() + 3600;
    let (status, _) = call(
        &sim,
        Method::POST,
        &events_path(&sim.primary_calendar_id(&ana)),
        &token,
        Some(event_body(start, start + 60)),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(call(&sim, Method::POST, primary, &token, None).await.0, 200);
}

#[tokio::test]
async fn batch_get_id_maps_known_emails_and_leaves_unknown_ones_without_id() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user_with("ana@example.com", "Ana", Some("ana@corp.example"));
    let tenant = tenant_token(&sim).await;
    let path = "/open-apis/contact/v3/users/batch_get_id?user_id_type=open_id";
    let (status, body) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(json!({
            "emails": ["ANA@example.com", "ghost@example.com", "ana@corp.example"],
            "include_resigned": false,
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let list = body["data"]["user_list"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["user_id"], ana);
    assert_eq!(list[0]["email"], "ANA@example.com");
    assert_eq!(list[1], json!({ "email": "ghost@example.com" }));
    assert!(
        list[2].get("user_id").is_none(),
        "enterprise mailboxes are not looked up"
    );

    let too_many: Vec<String> = (0..51).map(|i| format!("u{i}@example.com")).collect();
    let (status, body) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(json!({ "emails": too_many })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99992402)));
    let user = user_token(&sim, "ana@example.com", SCOPES).await;
    let (status, body) = call(
        &sim,
        Method::POST,
        path,
        &user,
        Some(json!({ "emails": [] })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (401, Some(99991663)),
        "tenant token only"
    );
    sim.set_app_scope(contact::CONTACT_ID_SCOPE, false);
    let (status, body) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(json!({ "emails": ["ana@example.com"] })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99991672)));
}

#[tokio::test]
async fn tenant_token_reserves_for_an_owner_behind_the_app_permission() {
    let sim = LarkSim::start(0).await.unwrap();
    let ana = sim.add_user("ana@example.com", "Ana");
    let bo = sim.add_user("bo@example.com", "Bo");
    let tenant = tenant_token(&sim).await;
    let apply = "/open-apis/vc/v1/reserves/apply";
    let end = (unix_now() + 86_400).to_string();

    let (status, body) = call(
        &sim,
        Method::POST,
        apply,
        &tenant,
        Some(json!({ "end_time": end })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(121003)),
        "owner_id is required"
    );
    let (status, body) = call(
        &sim,
        Method::POST,
        apply,
        &tenant,
        Some(json!({ "end_time": end, "owner_id": "ou_nobody" })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(121003)));
    let (status, body) = call(
        &sim,
        Method::POST,
        apply,
        &tenant,
        Some(json!({
            "end_time": end, "owner_id": ana, "meeting_settings": { "topic": "T" },
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["reserve"]["reserve_user_id"], ana);
    let id = body["data"]["reserve"]["id"].as_str().unwrap().to_string();
    let held = &sim.reserves()[0];
    assert_eq!(
        (held.owner_open_id.as_str(), held.applied_by_app),
        (ana.as_str(), true)
    );

    // The app manages what it applied; the owner does too, with their own token.
    let path = format!("/open-apis/vc/v1/reserves/{id}");
    let later = (unix_now() + 2 * 86_400).to_string();
    let (status, _) = call(
        &sim,
        Method::PUT,
        &path,
        &tenant,
        Some(json!({ "end_time": later, "owner_id": ana })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &sim,
        Method::PUT,
        &path,
        &tenant,
        Some(json!({ "end_time": later, "owner_id": bo })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (403, Some(121005)));
    let ana_token = user_token(&sim, "ana@example.com", SCOPES).await;
    let (status, _) = call(&sim, Method::GET, &path, &ana_token, None).await;
    assert_eq!(status, 200);
    // ...but not a reservation a user made with their own token.
    let (_, own) = call(
        &sim,
        Method::POST,
        apply,
        &ana_token,
        Some(json!({ "end_time": end, "owner_id": bo })),
    )
    .await;
    assert_eq!(
        own["data"]["reserve"]["reserve_user_id"], ana,
        "a user token's owner_id is ignored"
    );
    let own_path = format!(
        "/open-apis/vc/v1/reserves/{}",
        own["data"]["reserve"]["id"].as_str().unwrap()
    );
    let (status, _) = call(&sim, Method::DELETE, &own_path, &tenant, None).await;
    assert_eq!(status, 403);

    sim.set_app_scope("vc:reserve", false);
    let (status, body) = call(
        &sim,
        Method::POST,
        apply,
        &tenant,
        Some(json!({ "end_time": end, "owner_id": ana })),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99991672)));
    let (status, body) = call(&sim, Method::DELETE, &path, &tenant, None).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(99991672)));
    let (status, _) = call(
        &sim,
        Method::POST,
        apply,
        &ana_token,
        Some(json!({ "end_time": end })),
    )
    .await;
    assert_eq!(
        status, 200,
        "user tokens do not need the app's tenant permission"
    );
    sim.set_app_scope("vc:reserve", true);
    let (status, _) = call(&sim, Method::DELETE, &path, &tenant, None).await;
    assert_eq!(status, 200);
    assert!(sim.reserves()[0].deleted);
}

#[tokio::test]
async fn bot_posts_to_a_group_chat_it_is_in() {
    let sim = LarkSim::start(0).await.unwrap();
    let chat = sim.create_chat("Training admins");
    assert!(chat.starts_with("oc_"));
    let tenant = tenant_token(&sim).await;
    let path = "/open-apis/im/v1/messages?receive_id_type=chat_id";
    let message = |to: &str, uuid: &str| {
        json!({
            "receive_id": to,
            "msg_type": "text",
            "content": "{\"text\":\"Booking a0X1 failed\"}",
            "uuid": uuid,
        })
    };
    let (status, body) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(message(&chat, "alert-1")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["chat_id"], chat);
    let (_, again) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(message(&chat, "alert-1")),
    )
    .await;
    assert_eq!(again["data"]["message_id"], body["data"]["message_id"]);
    let received = sim.chat_messages(&chat);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].text, "Booking a0X1 failed");

    let (status, made) = call(
        &sim,
        Method::POST,
        "/open-apis/im/v1/chats",
        &tenant,
        Some(json!({ "name": "Ops", "chat_mode": "group", "chat_type": "private" })),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let ops = made["data"]["chat_id"].as_str().unwrap();
    assert!(ops.starts_with("oc_") && ops != chat);
    let (status, _) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(message(ops, "ops-1")),
    )
    .await;
    assert_eq!(status, 200, "the app's own chat has its bot in it");
    assert_eq!(sim.chat_messages(ops).len(), 1);

    let (status, body) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(message("oc_unknown", "alert-2")),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(230034)));
    sim.remove_bot_from_chat(&chat);
    let (status, body) = call(
        &sim,
        Method::POST,
        path,
        &tenant,
        Some(message(&chat, "alert-3")),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(230002)));
    assert_eq!(sim.chat_messages(&chat).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_comes_late_after_the_work_is_done() {
    let _frozen = FrozenClock::hold();
    let sim = LarkSim::start(0).await.unwrap();
    sim.add_user("ana@example.com", "Ana");
    let token = user_token(&sim, "ana@example.com", SCOPES).await;
    sim.faults().slow_answers(
        Some(Method::POST),
        "/vc/v1/reserves/apply",
        1,
        Duration::from_secs(6),
    );
    let apply = |token: String, base: String| async move {
        http()
            .post(format!("{base}/open-apis/vc/v1/reserves/apply"))
            .bearer_auth(token)
            .json(&json!({ "end_time": (unix_now() + 3600).to_string() }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let slow = tokio::spawn(apply(token.clone(), sim.base_url()));
    eventually("the apply is carried out", || sim.reserves().len() == 1).await;
    assert_eq!(
        sim.requests().count(&Method::POST, "/reserves/apply"),
        1,
        "in the log before its answer"
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    tokio::task::yield_now().await;
    assert!(!slow.is_finished(), "no answer before 6 s");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(slow.await.unwrap(), 200);
    // Only the one: the next apply is answered at once.
    assert_eq!(apply(token, sim.base_url()).await, 200);
    assert_eq!(sim.reserves().len(), 2);
}
