//! A scripted browser for the connect flow against the Lark simulator: it follows the
//! real redirects (connect link → Lark authorize page → callback) and carries the state
//! cookie, exactly as a trainer's browser would. Used by `demo` and `bench`.

use anyhow::{bail, Context};

/// The hops of a connection, reported as they happen (the demo narrates them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectHop {
    /// The connect link redirected to Lark's authorize page.
    RedirectedToLark,
    /// The trainer signed in to Lark and approved; Lark redirected back.
    Approved,
    /// The callback answered "Lark connected".
    Connected,
}

/// Connects `trainer_id` as the Lark user `email` through the service at `service_url`.
/// `http` must not follow redirects.
pub async fn connect_trainer(
    http: &reqwest::Client,
    service_url: &str,
    trainer_id: &str,
    email: &str,
    mut on_hop: impl FnMut(ConnectHop),
) -> anyhow::Result<()> {
    let start = http
        .get(format!(
            "{service_url}/oauth/lark/start?trainer={trainer_id}"
        ))
        .send()
        .await?;
    if start.status() != 302 {
        bail!("connect link answered {}", start.status());
    }
    let cookie = start
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no state cookie")?
        .to_string();
    let mut authorize = url::Url::parse(
        start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("no redirect")?,
    )?;
    on_hop(ConnectHop::RedirectedToLark);
    // The simulator's login page: `sim_user` chooses who signs in.
    authorize.query_pairs_mut().append_pair("sim_user", email);
    let approved = http.get(authorize.as_str()).send().await?;
    let callback = approved
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("Lark did not redirect back")?
        .to_string();
    on_hop(ConnectHop::Approved);
    let done = http.get(&callback).header("cookie", cookie).send().await?;
    let status = done.status();
    let body = done.text().await.unwrap_or_default();
    if status != 200 || !body.contains("Lark connected") {
        bail!("callback answered {status}");
    }
    on_hop(ConnectHop::Connected);
    Ok(())
}
