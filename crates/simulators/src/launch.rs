//! Starting both simulators together, seeding the sample org, and the `simulate`
//! command that prints a config snippet for them (with an alerts chat) and how to drive
//! a meeting.

use serde_json::json;

use super::lark::LarkSim;
use super::salesforce::SalesforceSim;
use super::{LARK_APP_ID, LARK_APP_SECRET, SF_CLIENT_ID, SF_CLIENT_SECRET, SF_HUMAN_USER_ID};

/// Name of the group chat `simulate` makes for admin alerts (`alerts.lark_chat_id`).
pub const ALERTS_CHAT_NAME: &str = "Lark VC Bridge alerts";

/// How to drive a reserved meeting through the Lark simulator's own endpoints (design
/// §5), with curl; each step raises its `vc.meeting.*` event over the long connection.
pub fn meeting_howto(lark: &str) -> String {
    format!(
        "\nDrive a reserved meeting (simulator-only endpoints, off /open-apis; each step raises its
vc.meeting.* event over the long connection at {lark}/callback/ws/endpoint).
MEETING is the meeting number at the end of the booking's link (https://vc.larksuite.com/j/MEETING):
  curl -s -X POST {lark}/sim/meetings/start -d '{{\"reservation\":\"MEETING\"}}'
  curl -s -X POST {lark}/sim/meetings/MEETING/join -d '{{\"host\":true}}'
  curl -s -X POST {lark}/sim/meetings/MEETING/join -d '{{\"guest\":\"Merchant Name\"}}'
  curl -s -X POST {lark}/sim/meetings/MEETING/join -d '{{\"email\":\"bruno.silva@example.com\"}}'
  curl -s -X POST {lark}/sim/meetings/MEETING/leave -d '{{\"guest\":\"Merchant Name\"}}'
  curl -s -X POST {lark}/sim/meetings/MEETING/end
  curl -s -X POST {lark}/sim/meetings/MEETING/recording -d '{{\"duration_ms\":1800000}}'
  curl -s {lark}/sim/meetings    # the meetings and who is in them
  curl -s {lark}/sim/events      # the long connection: events, pushes, acknowledgements
"
    )
}

/// A seeded trainer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeededTrainer {
    pub id: String,
    pub name: String,
    pub email: String,
    /// False for the trainer who has no Lark account.
    pub has_lark_account: bool,
}

/// Both simulators, running.
pub struct Simulators {
    pub salesforce: SalesforceSim,
    pub lark: LarkSim,
}

impl Simulators {
    /// Starts both on loopback (port 0 = any free port).
    pub async fn start(sf_port: u16, lark_port: u16) -> std::io::Result<Simulators> {
        Ok(Simulators {
            salesforce: SalesforceSim::start(sf_port).await?,
            lark: LarkSim::start(lark_port).await?,
        })
    }

    /// Seeds trainers with matching Lark users, and one trainer without a Lark account.
    pub fn seed_trainers(&self) -> Vec<SeededTrainer> {
        let people = [
            ("Alice Chen", "alice.chen@example.com", true),
            ("Bruno Silva", "bruno.silva@example.com", true),
            ("Chidi Okafor", "chidi.okafor@example.com", true),
            ("Dana Novak", "dana.novak@example.com", false),
        ];
        people
            .into_iter()
            .map(|(name, email, lark)| {
                if lark {
                    self.lark.add_user(email, name);
                }
                let id = self.salesforce.insert(
                    "Onboarding_Trainer__c",
                    json!({ "Name": name, "Email__c": email }),
                    SF_HUMAN_USER_ID,
                );
                SeededTrainer {
                    id,
                    name: name.to_string(),
                    email: email.to_string(),
                    has_lark_account: lark,
                }
            })
            .collect()
    }

    /// A TOML snippet with the keys of design §2.1 pointing at these simulators.
    pub fn config_snippet(&self) -> String {
        format!(
            "[salesforce]\nlogin_url = \"{sf}\"\nclient_id = \"{SF_CLIENT_ID}\"\nclient_secret = \"{SF_CLIENT_SECRET}\"\n\n\
[lark]\nbase_url = \"{lark}\"\naccounts_url = \"{lark}\"\napp_id = \"{LARK_APP_ID}\"\napp_secret = \"{LARK_APP_SECRET}\"\n",
            sf = self.salesforce.base_url(),
            lark = self.lark.base_url(),
        )
    }
}

/// The `simulate` command: runs the simulators until `stop` resolves (ctrl-c).
pub async fn run_simulate(
    sf_port: u16,
    lark_port: u16,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let sims = Simulators::start(sf_port, lark_port).await?;
    let trainers = sims.seed_trainers();
    let alerts_chat = sims.lark.create_chat(ALERTS_CHAT_NAME);
    println!("Salesforce simulator: {}", sims.salesforce.base_url());
    println!("Lark simulator:       {}", sims.lark.base_url());
    println!("\n# Config for lark-vc-bridge (simulator credentials only; they are not secrets):\n");
    println!("{}", sims.config_snippet());
    println!("# The group chat \"{ALERTS_CHAT_NAME}\", with the app's bot in it:\n[alerts]\nlark_chat_id = \"{alerts_chat}\"\n");
    println!(
        "# Also set security.encryption_key (64 hex) and security.state_secret (≥32 bytes), e.g.:"
    );
    println!(
        "#   LVB__SECURITY__ENCRYPTION_KEY={} LVB__SECURITY__STATE_SECRET={}",
        crate::wire::random_hex(32),
        crate::wire::random_hex(32)
    );
    println!("\nSeeded trainers (Onboarding_Trainer__c):");
    for t in &trainers {
        println!(
            "  {}  {:<14} {:<28} {}",
            t.id,
            t.name,
            t.email,
            if t.has_lark_account {
                "Lark user"
            } else {
                "no Lark account"
            }
        );
    }
    println!("\nCreate bookings with POST {}/services/data/v62.0/sobjects/Training_Booking__c (after logging in at /services/oauth2/token).", sims.salesforce.base_url());
    print!("{}", meeting_howto(&sims.lark.base_url()));
    println!("Running until ctrl-c.");
    stop.await;
    Ok(())
}
