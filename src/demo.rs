//! `demo`: the main job on the embedded default. Starts both simulators in-process and
//! the real service against them (the same `App` that `run` starts), then walks through
//! a trainer connecting and bookings being created, rescheduled and cancelled, then a
//! session taking place (started, the trainer joins, the merchant joins, ended, the
//! recording ready: its attendance lands on the booking) and a trainer who never shows
//! (the no-show message and the admins' alert), narrating each step with timestamps.
//! Ends with the bookings, trainers and call counts as the simulators saw them. Exits
//! non-zero if any step does not happen in time.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::http::Method;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Map, Value};

use lark_vc_bridge::app::App;
use lark_vc_bridge::config::Settings;
use lvb_simulators::browser::{connect_trainer, ConnectHop};
use lvb_simulators::launch::{SeededTrainer, Simulators};
use lvb_simulators::SF_HUMAN_USER_ID;

/// How long one step may take before the demo gives up.
const STEP_DEADLINE: Duration = Duration::from_secs(45);
const BOOKING: &str = "Training_Booking__c";
const TRAINER: &str = "Onboarding_Trainer__c";

/// One narrated step.
#[derive(Debug, Serialize)]
struct Step {
    at_secs: f64,
    message: String,
}

struct Narrator {
    started: Instant,
    json: bool,
    steps: Vec<Step>,
}

impl Narrator {
    fn say(&mut self, message: impl Into<String>) {
        let message = message.into();
        let at = self.started.elapsed().as_secs_f64();
        if !self.json {
            println!("[{at:>6.2}s] {message}");
        }
        self.steps.push(Step {
            at_secs: (at * 1000.0).round() / 1000.0,
            message,
        });
    }

    /// Waits for `check` to hold, with a spinner on a terminal; fails after the deadline.
    async fn wait<F, Fut>(&mut self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let spinner = !self.json && std::io::stderr().is_terminal();
        let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        let deadline = Instant::now() + STEP_DEADLINE;
        let mut i = 0;
        loop {
            if check().await {
                if spinner {
                    eprint!("\r\x1b[2K");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                if spinner {
                    eprintln!();
                }
                bail!("timed out after {STEP_DEADLINE:?} waiting until {what}");
            }
            if spinner {
                eprint!("\r  {} waiting until {what}…", frames[i % frames.len()]);
                let _ = std::io::stderr().flush();
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Runs the demo.
pub async fn run(json: bool) -> anyhow::Result<()> {
    let mut n = Narrator {
        started: Instant::now(),
        json,
        steps: Vec::new(),
    };
    let sims = Simulators::start(0, 0).await?;
    let sf = &sims.salesforce;
    let lark = &sims.lark;
    n.say(format!(
        "Salesforce simulator at {}, Lark simulator at {}",
        sf.base_url(),
        lark.base_url()
    ));

    let store_dir = std::env::temp_dir().join(format!(
        "lark-vc-bridge-demo-{}-{}",
        std::process::id(),
        lvb_simulators::wire::random_hex(4)
    ));
    let mut settings = Settings::load_from(
        None,
        lvb_simulators::service_env(
            &sf.base_url(),
            &lark.base_url(),
            &store_dir.join("store.db"),
        ),
    )?;
    // The merchant's email on the booking: invited to the session's calendar event.
    settings.salesforce.booking.attendee_email_field = Some("Merchant_Email__c".into());
    // Admin alerts go to a group chat; a trainer not in the meeting 2 s after the start
    // gets the no-show message (10 minutes by default: short, so the demo stays quick).
    let admins_chat = lark.create_chat("Training admins");
    settings.alerts.lark_chat_id = Some(admins_chat.clone());
    settings.alerts.no_show_after = Some(Duration::from_secs(2));
    let app = App::build(settings).await?;
    let url = app.local_url();
    let shutdown = app.shutdown_handle();
    let service = tokio::spawn(app.run_until_stopped(std::future::pending()));
    n.say(format!(
        "lark-vc-bridge started at {url} (the same service `run` starts)"
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    n.wait(
        "the service is ready (Salesforce login and CDC subscription)",
        || async {
            http.get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await?;
    n.say("ready: logged in to Salesforce and subscribed to /data/Training_Booking__ChangeEvent");

    let trainers = sims.seed_trainers();
    let (a, b) = (&trainers[0], &trainers[1]);
    n.say(format!(
        "trainers in Salesforce: {} ({}) and {} ({}), neither connected to Lark yet",
        a.name, a.id, b.name, b.id
    ));

    // 1. Trainer A connects.
    connect(&mut n, &http, &url, &a.id, &a.email, &a.name).await?;
    n.wait("Salesforce shows the trainer connected", || async {
        field(sf.get(TRAINER, &a.id), "Lark_Connected__c") == json!(true)
    })
    .await?;
    n.say(format!(
        "{}'s trainer record: Lark_Connected__c = true, tokens stored encrypted",
        a.name
    ));

    // 2. A remote booking for A.
    let start = Utc::now() + chrono::Duration::days(3);
    let booking_a = sf.insert(
        BOOKING,
        json!({
            "Name": "Onboarding — Acme Coffee",
            "Trainer__c": a.id,
            "Training_Start__c": start.to_rfc3339(),
            "Training_End__c": (start + chrono::Duration::hours(1)).to_rfc3339(),
            "Service_Type__c": "Remote",
            "Status__c": "Scheduled",
            "Merchant_Name__c": "Acme Coffee",
            "Merchant_Email__c": "owner@acme-coffee.example"
        }),
        SF_HUMAN_USER_ID,
    );
    n.say(format!(
        "a Salesforce user creates a remote booking {booking_a} for {}",
        a.name
    ));
    n.wait("the booking has its meeting link", || async {
        field(sf.get(BOOKING, &booking_a), "Lark_Meeting_Status__c") == json!("Created")
    })
    .await?;
    let link_a = field(
        sf.get(BOOKING, &booking_a),
        "Remote_Training_Meeting_Link__c",
    );
    n.say(format!(
        "booking {booking_a}: Lark_Meeting_Status__c = Created, link {}",
        link_a.as_str().unwrap_or("")
    ));
    n.wait("the session is on the trainer's Lark calendar", || async {
        field(sf.get(BOOKING, &booking_a), EVENT_FIELD).is_string()
    })
    .await?;
    let event_a = text(&field(sf.get(BOOKING, &booking_a), EVENT_FIELD));
    let ev = calendar_event(lark, &event_a)?;
    n.say(format!(
        "{}'s primary Lark calendar has event {event_a} \"{}\" {} to {} (written in zone {}), joining through the link; guests invited: {}",
        a.name,
        ev.summary,
        when(ev.start.timestamp),
        when(ev.end.timestamp),
        ev.start.timezone,
        guests(&ev)
    ));

    // 3. A booking for B, who has not connected.
    let start_b = Utc::now() + chrono::Duration::days(5);
    let booking_b = sf.insert(
        BOOKING,
        json!({
            "Name": "Onboarding — Blue Bottle",
            "Trainer__c": b.id,
            "Training_Start__c": start_b.to_rfc3339(),
            "Training_End__c": (start_b + chrono::Duration::minutes(90)).to_rfc3339(),
            "Service_Type__c": "Remote",
            "Status__c": "Scheduled",
            "Merchant_Name__c": "Blue Bottle",
            "Merchant_Email__c": "hello@bluebottle.example"
        }),
        SF_HUMAN_USER_ID,
    );
    n.say(format!(
        "a remote booking {booking_b} is created for {}, who has not connected Lark",
        b.name
    ));
    n.wait("the booking waits for its trainer", || async {
        field(sf.get(BOOKING, &booking_b), "Lark_Meeting_Status__c")
            == json!("Pending Trainer Connection")
    })
    .await?;
    n.say(format!(
        "booking {booking_b}: Lark_Meeting_Status__c = Pending Trainer Connection"
    ));
    n.wait("the trainer gets a reminder in Lark", || async {
        lark.bot_messages().iter().any(|m| m.receive_id == b.email)
    })
    .await?;
    n.say(format!(
        "{} received a Lark message with their connect link",
        b.name
    ));

    // 4. B connects; the pending booking gets its link with no edit.
    connect(&mut n, &http, &url, &b.id, &b.email, &b.name).await?;
    n.wait("the pending booking gets its link", || async {
        field(sf.get(BOOKING, &booking_b), "Lark_Meeting_Status__c") == json!("Created")
    })
    .await?;
    n.say(format!(
        "booking {booking_b}: Created without anyone editing it, link {}",
        field(
            sf.get(BOOKING, &booking_b),
            "Remote_Training_Meeting_Link__c"
        )
        .as_str()
        .unwrap_or("")
    ));
    n.wait(
        "the session is on the second trainer's calendar",
        || async { field(sf.get(BOOKING, &booking_b), EVENT_FIELD).is_string() },
    )
    .await?;
    let event_b = text(&field(sf.get(BOOKING, &booking_b), EVENT_FIELD));
    n.say(format!(
        "{}'s calendar has event {event_b}; guests invited: {}",
        b.name,
        guests(&calendar_event(lark, &event_b)?)
    ));

    // 5. Reschedule A's booking: same link, one PUT.
    let new_end = start + chrono::Duration::minutes(90);
    sf.update(
        BOOKING,
        &booking_a,
        json!({ "Training_End__c": new_end.to_rfc3339() }),
        SF_HUMAN_USER_ID,
    );
    n.say(format!(
        "booking {booking_a} is rescheduled to end 30 minutes later"
    ));
    n.wait("Lark holds the new end time", || async {
        lark.reserves()
            .iter()
            .any(|r| !r.deleted && r.end_time == new_end.timestamp())
    })
    .await?;
    let link_after = field(
        sf.get(BOOKING, &booking_a),
        "Remote_Training_Meeting_Link__c",
    );
    if link_after != link_a {
        bail!("the link changed on reschedule");
    }
    n.say("the reservation's end time was updated in Lark; the link is unchanged");
    n.wait("the calendar event moved with the booking", || async {
        calendar_event(lark, &event_a).is_ok_and(|e| e.end.timestamp == new_end.timestamp())
    })
    .await?;
    n.say(format!(
        "calendar event {event_a} now ends at {} (the same event, patched)",
        when(new_end.timestamp())
    ));

    // 6. Cancel B's booking.
    sf.update(
        BOOKING,
        &booking_b,
        json!({ "Status__c": "Cancelled" }),
        SF_HUMAN_USER_ID,
    );
    n.say(format!("booking {booking_b} is cancelled in Salesforce"));
    n.wait(
        "the reservation is deleted and the link cleared",
        || async {
            let rec = sf.get(BOOKING, &booking_b);
            field(rec.clone(), "Lark_Meeting_Status__c") == json!("Cancelled")
                && field(rec, "Remote_Training_Meeting_Link__c").is_null()
        },
    )
    .await?;
    n.say(format!(
        "booking {booking_b}: Cancelled, link cleared, Lark reservation deleted"
    ));
    n.wait(
        "the calendar event is deleted and its id cleared",
        || async {
            calendar_event(lark, &event_b).is_ok_and(|e| e.deleted)
                && field(sf.get(BOOKING, &booking_b), EVENT_FIELD).is_null()
        },
    )
    .await?;
    n.say(format!(
        "calendar event {event_b} deleted from {}'s calendar; {EVENT_FIELD} cleared",
        b.name
    ));

    // 7. A session takes place: its attendance lands on the booking.
    let session = session(&mut n, sf, lark, a).await?;

    // 8. A trainer who never shows.
    let no_show = no_show(&mut n, sf, lark, b, &admins_chat).await?;

    shutdown.trigger();
    service
        .await
        .context("service task")?
        .context("service stopped with an error")?;
    n.say("service stopped gracefully (checkpoint saved)");
    let _ = std::fs::remove_dir_all(&store_dir);

    let bookings: Vec<Value> = [&booking_a, &booking_b, &session, &no_show]
        .iter()
        .map(|id| {
            let r = sf.get(BOOKING, id).unwrap_or_default();
            let mut row = json!({
                "id": id,
                "trainer": r.get("Trainer__c"),
                "status": r.get("Lark_Meeting_Status__c"),
                "link": r.get("Remote_Training_Meeting_Link__c"),
                "reservation_id": r.get("Lark_Reservation_Id__c"),
                "calendar_event_id": r.get(EVENT_FIELD),
            });
            for (key, f) in ATTENDANCE {
                row[key] = r.get(f).cloned().unwrap_or(Value::Null);
            }
            row
        })
        .collect();
    let trainer_rows: Vec<Value> = [a, b]
        .iter()
        .map(|t| {
            let r = sf.get(TRAINER, &t.id).unwrap_or_default();
            json!({
                "id": t.id,
                "name": t.name,
                "connected": r.get("Lark_Connected__c"),
                "lark_user_id": r.get("Lark_User_ID__c"),
                "last_refresh": r.get("Lark_Last_Token_Refresh__c"),
            })
        })
        .collect();
    let sf_log = sf.requests();
    let lark_log = lark.requests();
    let sf_calls = json!({
        "auth": sf_log.count_path("/services/oauth2/token"),
        "query": sf_log.count(&Method::GET, "/query"),
        "update_one": sf_log.count(&Method::PATCH, "/sobjects/"),
        "update_collection": sf_log.count(&Method::PATCH, "/composite/sobjects"),
        "describe": sf_log.count(&Method::GET, "/describe"),
        "streaming": sf_log.count(&Method::POST, "/cometd/"),
    });
    let lark_calls = json!({
        "tenant_token": lark_log.count_path("/auth/v3/"),
        "oauth_token": lark_log.count_path("/authen/v2/oauth/token") + lark_log.count_path("/oidc/"),
        "user_info": lark_log.count_path("/authen/v1/user_info"),
        "apply": lark_log.count_path("/vc/v1/reserves/apply"),
        "update": lark_log.count(&Method::PUT, "/vc/v1/reserves/"),
        "delete": lark_log.count(&Method::DELETE, "/vc/v1/reserves/"),
        "messages": lark_log.count_path("/im/v1/messages"),
        "calendar": lark_log.count_path("/calendar/v4/"),
        "meetings": lark_log.count_path("/vc/v1/meetings"),
        "events_endpoint": lark_log.count_path("/callback/ws/endpoint"),
    });

    if json {
        let out = json!({
            "ok": true,
            "steps": n.steps,
            "bookings": bookings,
            "trainers": trainer_rows,
            "salesforce_calls": sf_calls,
            "lark_calls": lark_calls,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("\nBookings (Training_Booking__c, as the Salesforce simulator holds them)");
        println!(
            "  {:<18}  {:<18}  {:<27}  link",
            "id", "trainer", "Lark_Meeting_Status__c"
        );
        for b in &bookings {
            println!(
                "  {:<18}  {:<18}  {:<27}  {}",
                text(&b["id"]),
                text(&b["trainer"]),
                text(&b["status"]),
                text(&b["link"])
            );
        }
        println!("\nSession attendance (the Lark_Session_* fields)");
        println!(
            "  {:<18}  {:<11}  {:<24}  {:<24}  {:<24}  {:<6}  {:<5}  recording",
            "id", "session", "started", "ended", "trainer joined", "people", "guest"
        );
        for b in &bookings {
            println!(
                "  {:<18}  {:<11}  {:<24}  {:<24}  {:<24}  {:<6}  {:<5}  {}",
                text(&b["id"]),
                text(&b["session_status"]),
                text(&b["started_at"]),
                text(&b["ended_at"]),
                text(&b["trainer_joined_at"]),
                text(&b["participants"]),
                text(&b["guest_joined"]),
                text(&b["recording_url"])
            );
        }
        println!("\nTrainers (Onboarding_Trainer__c)");
        println!(
            "  {:<18}  {:<12}  {:<9}  Lark_Last_Token_Refresh__c",
            "id", "name", "connected"
        );
        for t in &trainer_rows {
            println!(
                "  {:<18}  {:<12}  {:<9}  {}",
                text(&t["id"]),
                text(&t["name"]),
                text(&t["connected"]),
                text(&t["last_refresh"])
            );
        }
        println!("\nCalls made by the service (and the trainers' browsers)");
        println!("  Salesforce: {}", summary(&sf_calls));
        println!("  Lark:       {}", summary(&lark_calls));
        println!(
            "\ndemo finished in {:.1}s: every step happened",
            n.started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The attendance fields of a booking: the demo's JSON key and the field.
const ATTENDANCE: [(&str, &str); 7] = [
    ("session_status", "Lark_Session_Status__c"),
    ("started_at", "Lark_Session_Started_At__c"),
    ("ended_at", "Lark_Session_Ended_At__c"),
    ("trainer_joined_at", "Lark_Trainer_Joined_At__c"),
    ("participants", "Lark_Participants__c"),
    ("guest_joined", "Lark_Guest_Joined__c"),
    ("recording_url", "Lark_Recording_Url__c"),
];

/// A remote booking for `trainer` starting `in_secs` from now, an hour long; waits for its
/// meeting and returns the booking and its Lark reservation.
async fn booking_starting(
    n: &mut Narrator,
    sf: &lvb_simulators::salesforce::SalesforceSim,
    lark: &lvb_simulators::lark::LarkSim,
    trainer: &SeededTrainer,
    merchant: &str,
    in_secs: i64,
) -> anyhow::Result<(String, lvb_simulators::lark::SimReserve)> {
    let start = Utc::now() + chrono::Duration::seconds(in_secs);
    let booking = sf.insert(
        BOOKING,
        json!({
            "Name": format!("Onboarding — {merchant}"),
            "Trainer__c": trainer.id,
            "Training_Start__c": start.to_rfc3339(),
            "Training_End__c": (start + chrono::Duration::hours(1)).to_rfc3339(),
            "Service_Type__c": "Remote",
            "Status__c": "Scheduled",
            "Merchant_Name__c": merchant,
        }),
        SF_HUMAN_USER_ID,
    );
    n.wait("the booking has its meeting link", || async {
        field(sf.get(BOOKING, &booking), "Lark_Meeting_Status__c") == json!("Created")
    })
    .await?;
    let reserve_id = text(&field(sf.get(BOOKING, &booking), "Lark_Reservation_Id__c"));
    let reserve = lark
        .reserves()
        .into_iter()
        .find(|r| r.id == reserve_id)
        .with_context(|| format!("Lark has no reservation {reserve_id}"))?;
    Ok((booking, reserve))
}

/// A session that takes place, narrated: started, the trainer joins, the merchant joins,
/// ended, the recording — and its attendance on the booking. Returns the booking.
async fn session(
    n: &mut Narrator,
    sf: &lvb_simulators::salesforce::SalesforceSim,
    lark: &lvb_simulators::lark::LarkSim,
    trainer: &SeededTrainer,
) -> anyhow::Result<String> {
    use lvb_simulators::lark::Person;
    let (booking, reserve) = booking_starting(n, sf, lark, trainer, "Corner Bakery", 120).await?;
    n.say(format!(
        "a remote session for Corner Bakery ({booking}) starts in 2 minutes; its meeting number is {}",
        reserve.meeting_no
    ));
    let shows = |status: &'static str| {
        let booking = booking.clone();
        move || {
            let booking = booking.clone();
            async move { field(sf.get(BOOKING, &booking), "Lark_Session_Status__c") == json!(status) }
        }
    };
    let meetings = lark.meetings();
    let meeting = meetings.start(&reserve.id, &Person::Host)?;
    meetings.join(&meeting.id, &Person::Host)?;
    n.say(format!(
        "{} starts the meeting and is in it (Lark sends meeting_started and join_meeting over the long connection)",
        trainer.name
    ));
    n.wait(
        "the booking shows the session in progress",
        shows("In Progress"),
    )
    .await?;
    let r = sf.get(BOOKING, &booking);
    n.say(format!(
        "booking {booking}: Lark_Session_Status__c = In Progress, started at {}, trainer joined at {}",
        text(&field(r.clone(), "Lark_Session_Started_At__c")),
        text(&field(r, "Lark_Trainer_Joined_At__c"))
    ));
    let merchant = Person::Guest("Corner Bakery (owner)".into());
    meetings.join(&meeting.id, &merchant)?;
    n.say("the merchant joins from outside the company");
    meetings.end(&meeting.id, &Person::Host)?;
    n.say(format!(
        "{} ends the meeting; the service asks Lark once for its participants",
        trainer.name
    ));
    n.wait(
        "the booking shows the session completed",
        shows("Completed"),
    )
    .await?;
    let r = sf.get(BOOKING, &booking);
    n.say(format!(
        "booking {booking}: Completed, ended at {}, {} participants, guest joined: {}",
        text(&field(r.clone(), "Lark_Session_Ended_At__c")),
        text(&field(r.clone(), "Lark_Participants__c")),
        text(&field(r, "Lark_Guest_Joined__c"))
    ));
    let url = meetings.recording_ready(&meeting.id, 45 * 60 * 1000)?;
    n.say("Lark finishes the recording (recording_ready)");
    n.wait("the recording is on the booking", || async {
        field(sf.get(BOOKING, &booking), "Lark_Recording_Url__c") == json!(url)
    })
    .await?;
    n.say(format!("booking {booking}: Lark_Recording_Url__c = {url}"));
    Ok(booking)
}

/// A session whose trainer never shows, narrated: the merchant waits in the meeting; the
/// trainer gets a message with the link and the admins an alert. Returns the booking.
async fn no_show(
    n: &mut Narrator,
    sf: &lvb_simulators::salesforce::SalesforceSim,
    lark: &lvb_simulators::lark::LarkSim,
    trainer: &SeededTrainer,
    admins_chat: &str,
) -> anyhow::Result<String> {
    use lvb_simulators::lark::Person;
    let (booking, reserve) = booking_starting(n, sf, lark, trainer, "Harbor Books", 1).await?;
    n.say(format!(
        "a remote session for Harbor Books ({booking}) with {} starts in a second",
        trainer.name
    ));
    let merchant = Person::Guest("Harbor Books (owner)".into());
    let meeting = lark.meetings().start(&reserve.id, &merchant)?;
    lark.meetings().join(&meeting.id, &merchant)?;
    n.say(format!(
        "the merchant opens the link and waits; {} does not join",
        trainer.name
    ));
    let to_trainer = || {
        lark.bot_messages()
            .into_iter()
            .find(|m| m.receive_id == trainer.email && m.text.contains("have not joined"))
    };
    n.wait("the trainer gets the no-show message", || async {
        to_trainer().is_some()
    })
    .await?;
    let message = to_trainer().map(|m| m.text).unwrap_or_default();
    n.say(format!(
        "{} receives a Lark message: \"{message}\"",
        trainer.name
    ));
    n.wait("the admins get an alert", || async {
        lark.chat_messages(admins_chat)
            .iter()
            .any(|m| m.text.contains(&booking))
    })
    .await?;
    let alert = lark
        .chat_messages(admins_chat)
        .into_iter()
        .find(|m| m.text.contains(&booking))
        .map(|m| m.text)
        .unwrap_or_default();
    n.say(format!(
        "the \"Training admins\" chat gets one alert: \"{}\"",
        alert.replace('\n', " / ")
    ));
    Ok(booking)
}

/// A trainer connecting: a scripted browser follows the real redirects, narrated.
async fn connect(
    n: &mut Narrator,
    http: &reqwest::Client,
    url: &str,
    trainer_id: &str,
    email: &str,
    name: &str,
) -> anyhow::Result<()> {
    connect_trainer(http, url, trainer_id, email, |hop| {
        n.say(match hop {
            ConnectHop::RedirectedToLark => {
                format!("{name} opens their connect link → redirected to Lark's authorize page")
            }
            ConnectHop::Approved => format!("{name} signs in to Lark as {email} and approves"),
            ConnectHop::Connected => format!("{name} sees \"Lark connected\""),
        })
    })
    .await
}

/// The booking field the service writes the calendar event id to.
const EVENT_FIELD: &str = "Lark_Calendar_Event_Id__c";

/// The calendar event the Lark simulator holds under this id.
fn calendar_event(
    lark: &lvb_simulators::lark::LarkSim,
    event_id: &str,
) -> anyhow::Result<lvb_simulators::lark::SimEvent> {
    lark.calendar_events()
        .into_iter()
        .find(|e| e.event_id == event_id)
        .with_context(|| format!("Lark has no calendar event {event_id}"))
}

/// The event's external guests, for the narration.
fn guests(event: &lvb_simulators::lark::SimEvent) -> String {
    let list: Vec<&str> = event
        .attendees
        .iter()
        .filter_map(|a| a.third_party_email.as_deref())
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn field(record: Option<Map<String, Value>>, name: &str) -> Value {
    record
        .and_then(|r| r.get(name).cloned())
        .unwrap_or(Value::Null)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        // Salesforce returns Number fields as floats: a count reads as one.
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            format!("{}", n.as_f64().unwrap_or_default() as i64)
        }
        other => other.to_string(),
    }
}

fn summary(calls: &Value) -> String {
    calls
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// An event time (unix seconds, as Lark holds it) for the narration, in UTC.
fn when(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}
