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
