//! Tests of [`super`] (check.rs): the Lark events item against the Lark simulator.

use lvb_simulators::lark::events::CODE_INVALID_CREDENTIAL;
use lvb_simulators::lark::LarkSim;

use super::*;

async fn settings_for(sim: &LarkSim, dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Settings {
    let mut vars = lvb_simulators::service_env(
        "http://127.0.0.1:9",
        &sim.base_url(),
        &dir.path().join("s.db"),
    );
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_from(None, vars).unwrap()
}

#[tokio::test]
async fn the_events_line_passes_when_the_endpoint_answers_and_names_the_console_steps() {
    let sim = LarkSim::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(&sim, &dir, &[]).await;
    let line = events_line(&settings).await;
    assert!(line.ok, "{line:?}");
    assert_eq!(line.what, "Lark events");
    for needle in [
        "receive events through a long connection",
        "vc.meeting.meeting_started_v1",
        "vc.meeting.join_meeting_v1",
        "vc.meeting.leave_meeting_v1",
        "vc.meeting.meeting_ended_v1",
        "vc.meeting.recording_ready_v1",
        "vc:meeting:readonly",
        "vc:record:readonly",
    ] {
        assert!(
            line.detail.contains(needle),
            "{needle} not in {}",
            line.detail
        );
    }
    assert!(
        !line.detail.contains("ticket="),
        "the URL's query is not shown: {}",
        line.detail
    );
    assert_eq!(sim.long_connection().stats().endpoint_calls, 1);
    assert_eq!(sim.long_connection().stats().connections_opened, 0);
}

#[tokio::test]
async fn the_events_line_fails_with_lark_s_code_and_message() {
    let sim = LarkSim::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.long_connection().fail_endpoint(
        CODE_INVALID_CREDENTIAL,
        "the App ID or App Secret is invalid",
        1,
    );
    let settings = settings_for(&sim, &dir, &[]).await;
    let line = events_line(&settings).await;
    assert!(!line.ok);
    assert!(
        line.detail.contains(&CODE_INVALID_CREDENTIAL.to_string()),
        "{}",
        line.detail
    );
    assert!(
        line.detail.contains("App Secret is invalid"),
        "{}",
        line.detail
    );
    assert!(line.detail.contains("lark.app_secret"), "{}", line.detail);
    assert!(line
        .detail
        .contains("receive events through a long connection"));
    assert!(!line.detail.contains(lvb_simulators::LARK_APP_SECRET));
}

#[tokio::test]
async fn with_events_off_the_line_passes_without_a_call_and_shows_the_notes() {
    let sim = LarkSim::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(&sim, &dir, &[("LVB__LARK__EVENTS", "off")]).await;
    let line = events_line(&settings).await;
    assert!(line.ok, "{line:?}");
    assert!(line.detail.starts_with("off"), "{}", line.detail);
    assert!(line.detail.contains("sweep alone"), "{}", line.detail);
    assert_eq!(sim.long_connection().stats().endpoint_calls, 0);
}
