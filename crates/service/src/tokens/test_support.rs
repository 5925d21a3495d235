//! What the token tests share: a [`TokenService`] against the Salesforce simulator (Lark
//! unreachable), with its store and vault at hand, and a Lark grant to save.

use std::sync::Arc;

use lvb_simulators::salesforce::SalesforceSim;

use crate::config::Settings;
use crate::ids::TrainerId;
use crate::lark::{LarkClient, TokenGrant};
use crate::store::Store;
use crate::tokens::{AccessToken, RefreshToken, TokenService, Vault};

/// The trainer object of the simulated org.
pub(crate) const TRAINER: &str = "Onboarding_Trainer__c";

pub(crate) struct Harness {
    pub(crate) sf: SalesforceSim,
    pub(crate) tokens: TokenService,
    pub(crate) store: Store,
    pub(crate) vault: Arc<Vault>,
    _dir: tempfile::TempDir,
}

/// A token service writing to a fresh Salesforce simulator, with an in-memory store.
pub(crate) async fn harness() -> Harness {
    let sf = SalesforceSim::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Arc::new(
        Settings::for_simulators(
            &sf.base_url(),
            "http://127.0.0.1:9",
            &dir.path().join("s.db"),
        )
        .unwrap(),
    );
    let store = Store::in_memory().unwrap();
    let vault = Arc::new(Vault::from_settings(&settings.security));
    let tokens = TokenService::new(
        settings.clone(),
        crate::salesforce::SalesforceClient::new(&settings.salesforce).unwrap(),
        LarkClient::new(&settings.lark).unwrap(),
        store.clone(),
        vault.clone(),
        crate::metrics::Metrics::default(),
        tokio::sync::mpsc::unbounded_channel().0,
    );
    Harness {
        sf,
        tokens,
        store,
        vault,
        _dir: dir,
    }
}

impl Harness {
    /// A trainer record, made by a Salesforce user.
    pub(crate) fn insert_trainer(&self, name: &str) -> TrainerId {
        let id = self.sf.insert(
            TRAINER,
            serde_json::json!({ "Name": name, "Email__c": format!("{name}@example.com") }),
            lvb_simulators::SF_HUMAN_USER_ID,
        );
        TrainerId::parse(&id).unwrap()
    }
}

/// What Lark grants on a connect: `access`, a refresh token after it, and the scopes.
pub(crate) fn grant(access: &str) -> TokenGrant {
    TokenGrant {
        access_token: AccessToken::new(access),
        expires_in: 7200,
        refresh_token: Some(RefreshToken::new(format!("{access}-refresh"))),
        refresh_expires_in: Some(604_800),
        scope: Some("vc:reserve offline_access".into()),
    }
}
