//! POSTs alerts to `--alert-webhook URL` (Slack-compatible: the body has a
//! `text` field besides the alert itself).

use mnist_events::{Event, EventKind, EventSink};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;

/// Alerts waiting to be posted before new ones are dropped (and logged).
const QUEUE: usize = 64;

/// Longest a finished run waits for its last alerts to be posted.
const DRAIN: Duration = Duration::from_secs(10);

/// An [`EventSink`] that POSTs each `alert` event to a URL from a thread of
/// its own; other events are ignored.
pub struct WebhookSink {
    tx: Option<SyncSender<serde_json::Value>>,
    /// Closed by the posting thread once everything queued was sent.
    done: std::sync::mpsc::Receiver<()>,
}

/// Why the webhook sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an http(s) URL.
    #[error("--alert-webhook: expected an http:// or https:// URL, got {0:?}")]
    BadUrl(String),
    /// The posting thread could not be spawned.
    #[error("--alert-webhook: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

impl WebhookSink {
    /// Starts the posting thread. The URL is checked here, so a typo fails
    /// before training starts.
    pub fn new(url: &str) -> Result<Self, WebhookError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(WebhookError::BadUrl(url.to_string()));
        }
        let url = url.to_string();
        let (tx, rx) = sync_channel::<serde_json::Value>(QUEUE);
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("alert-webhook".into())
            .spawn(move || {
                let _done = done_tx;
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(10))
                    .build();
                for body in rx {
                    if let Err(e) = agent
                        .post(&url)
                        .set("Content-Type", "application/json")
                        .send_string(&body.to_string())
                    {
                        tracing::warn!("alert webhook {url}: {e}");
                    }
                }
            })
            .map_err(WebhookError::Thread)?;
        Ok(Self { tx: Some(tx), done })
    }
}

impl Drop for WebhookSink {
    /// The run is over: post what is queued (the alert that stopped it is
    /// often the last event) before the process may exit, for at most
    /// [`DRAIN`].
    fn drop(&mut self) {
        self.tx.take();
        let _ = self.done.recv_timeout(DRAIN);
    }
}

impl EventSink for WebhookSink {
    fn emit(&mut self, event: &Event) {
        let EventKind::Alert(alert) = &event.kind else {
            return;
        };
        let body = serde_json::json!({
            "text": format!("mnist-monitor run {}: {}", event.run_id, alert.message),
            "run_id": event.run_id,
            "seq": event.seq,
            "ts_ms": event.ts_ms,
            "alert": alert,
        });
        let Some(tx) = &self.tx else { return };
        match tx.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("alert webhook is behind; dropped an alert")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}
