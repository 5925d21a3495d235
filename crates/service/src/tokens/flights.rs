//! Each trainer's single-flight lock (design §3 rules 5 and 16): every path that touches a
//! trainer's tokens — connect, refresh, disconnect, rotate-key, the batched Salesforce
//! write of rotated tokens — holds it. Whoever takes more than one takes them in id order
//! ([`Flights::lock_in_order`]), so two such paths can never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::ids::TrainerId;

/// The per-trainer locks of one token service.
#[derive(Default)]
pub struct Flights {
    by_trainer: Mutex<HashMap<TrainerId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    /// The trainer's lock (created on first use).
    pub fn of(&self, trainer: &TrainerId) -> Arc<tokio::sync::Mutex<()>> {
        self.by_trainer
            .lock()
            .expect("flights")
            .entry(trainer.clone())
            .or_default()
            .clone()
    }

    /// Takes the locks of `trainers` (duplicates once), in id order. Returns the guards
    /// with their trainers, in that order.
    pub async fn lock_in_order(
        &self,
        mut trainers: Vec<TrainerId>,
    ) -> Vec<(TrainerId, OwnedMutexGuard<()>)> {
        trainers.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        trainers.dedup();
        let mut guards = Vec::with_capacity(trainers.len());
        for trainer in trainers {
            let guard = self.of(&trainer).lock_owned().await;
            guards.push((trainer, guard));
        }
        guards
    }
}
