//! The subscriber loop: moves what the transport yields onto the processor's bounded
//! channel, and nothing else (no decisions, no checkpoints).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::cometd::CometdTransport;
use super::{EventTransport, StatusReporter, StreamError, StreamItem, StreamStatus};
use crate::config::StreamingSettings;
use crate::ids::ReplayId;
use crate::salesforce::rest::SalesforceClient;

/// Moves items from `transport` onto `tx` until `shutdown` turns true (or its sender is
/// dropped), the receiver goes away, or the transport fails. While `tx` is full the next
/// poll waits, so a slow processor slows the stream instead of growing memory.
pub async fn pump<T: EventTransport>(
    transport: &mut T,
    tx: &mpsc::Sender<StreamItem>,
    shutdown: &mut watch::Receiver<bool>,
    status: &StatusReporter,
) -> Result<(), StreamError> {
    let outcome = 'run: loop {
        let items = tokio::select! {
            biased;
            _ = shutdown_requested(shutdown) => break 'run Ok(()),
            next = transport.next() => match next {
                Ok(items) => items,
                Err(e) => break 'run Err(e),
            },
        };
        for item in items {
            let replay_id = item.replay_id();
            tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => break 'run Ok(()),
                sent = tx.send(item) => {
                    if sent.is_err() {
                        break 'run Err(StreamError::ReceiverGone);
                    }
                }
            }
            if let Some(replay_id) = replay_id {
                status.event_delivered(replay_id);
            }
        }
    };
    status.set_subscribed(false);
    transport.close().await;
    outcome
}

async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender can never say "stop" any more: take it as the signal.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Subscribes to `settings.channel` over CometD and feeds `tx` until shutdown.
///
/// `start_from` is where the first subscription starts (`-1`, `-2`, or the saved
/// checkpoint). `checkpoint` returns the last replay id whose work is done; every
/// resubscription (after a dropped client, a re-login, a server restart) starts from it,
/// or from the last event already handed over when nothing is saved yet. An invalid
/// replay id falls back to `-1` with a [`StreamItem::ReplayGap`]. Events the processor
/// already received in this run are not handed over twice.
pub async fn run_subscriber(
    client: SalesforceClient,
    settings: StreamingSettings,
    start_from: ReplayId,
    checkpoint: impl Fn() -> Option<ReplayId> + Send + Sync + 'static,
    tx: mpsc::Sender<StreamItem>,
    mut shutdown: watch::Receiver<bool>,
    status: watch::Sender<StreamStatus>,
) -> Result<(), StreamError> {
    let status = StatusReporter::new(status);
    let mut transport =
        CometdTransport::new(client, &settings, start_from, checkpoint, status.clone())?;
    pump(&mut transport, &tx, &mut shutdown, &status).await
}

/// For `check`: handshakes, subscribes to `settings.channel` for new events only, and
/// disconnects. Transient trouble is retried until `within` runs out.
pub async fn check_subscription(
    client: SalesforceClient,
    settings: &StreamingSettings,
    within: Duration,
) -> Result<(), StreamError> {
    let mut transport = CometdTransport::new(
        client,
        settings,
        ReplayId::Latest,
        || None,
        StatusReporter::detached(),
    )?;
    let outcome = tokio::time::timeout(within, async {
        loop {
            let items = transport.next().await?;
            if items
                .iter()
                .any(|i| matches!(i, StreamItem::Subscribed { .. }))
            {
                return Ok(());
            }
        }
    })
    .await
    .unwrap_or(Err(StreamError::NotSubscribedWithin(within)));
    transport.close().await;
    outcome
}
