//! The pipeline's status, published for whoever reports on it (`/readyz` reads it; the
//! bookings side knows nothing of HTTP). The subscriber's status watch is its one writer
//! for the streaming part; start-up and the subscriber set the Salesforce login part; the
//! processor sets whether the store can be written.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the pipeline can take work: Salesforce login and the streaming subscription.
#[derive(Debug, Default)]
pub struct PipelineStatus {
    salesforce: AtomicBool,
    streaming: AtomicBool,
    /// The store cannot be written: the pipeline is paused (rule 23).
    store_unwritable: AtomicBool,
}

impl PipelineStatus {
    /// Salesforce login succeeded.
    pub fn salesforce_login(&self) -> bool {
        self.salesforce.load(Ordering::Relaxed)
    }

    /// The streaming subscription is live.
    pub fn streaming_subscription(&self) -> bool {
        self.streaming.load(Ordering::Relaxed)
    }

    /// True while the store can be written.
    pub fn store_writable(&self) -> bool {
        !self.store_unwritable.load(Ordering::Relaxed)
    }

    /// True when Salesforce and the subscription are up and the store can be written.
    pub fn ready(&self) -> bool {
        self.salesforce_login() && self.streaming_subscription() && self.store_writable()
    }

    /// Records whether the store can be written.
    pub fn set_store_writable(&self, writable: bool) {
        self.store_unwritable.store(!writable, Ordering::Relaxed);
    }

    /// Records that a Salesforce login worked.
    pub fn set_salesforce_login(&self, up: bool) {
        self.salesforce.store(up, Ordering::Relaxed);
    }

    /// Records whether the subscription is live (a live one implies a working login).
    pub fn set_streaming_subscription(&self, up: bool) {
        self.streaming.store(up, Ordering::Relaxed);
        if up {
            self.set_salesforce_login(true);
        }
    }
}
