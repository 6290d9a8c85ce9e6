//! POSTs a run's notifications to `--alert-webhook URL`: every alert
//! (`stalled` included) and the run's end (completed, failed or stopped),
//! as a Slack message, a Discord message or plain JSON ([`WebhookFormat`]),
//! from a thread of its own so a slow endpoint never slows training.

use mnist_events::{Alert, AlertSeverity, Event, EventKind, EventSink, RunFinished, RunStatus};
use serde_json::{json, Value};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;

/// Notifications waiting to be posted before new ones are dropped (and logged).
const QUEUE: usize = 64;

/// Longest a finished run waits for its last notifications to be posted.
const DRAIN: Duration = Duration::from_secs(10);

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// Slack for `hooks.slack.com`, Discord for `discord.com/api/webhooks`
    /// (and `discordapp.com`), JSON for anything else.
    #[default]
    Auto,
    /// A Slack incoming-webhook message: `text` plus `blocks`.
    Slack,
    /// A Discord webhook message: an embed with title, colour and fields.
    Discord,
    /// The event itself with a `text` summary (Slack-compatible too): for
    /// your own receiver, ntfy, Mattermost, Teams workflows.
    Json,
}

impl WebhookFormat {
    /// The names `--webhook-format` takes.
    pub const NAMES: [&'static str; 4] = ["auto", "slack", "discord", "json"];

    /// The format a URL gets under `Auto`.
    pub fn for_url(self, url: &str) -> Self {
        if self != WebhookFormat::Auto {
            return self;
        }
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let host = rest
            .split(['/', '?'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let path = &rest[host.len().min(rest.len())..];
        if host == "hooks.slack.com" {
            WebhookFormat::Slack
        } else if [
            "discord.com",
            "discordapp.com",
            "ptb.discord.com",
            "canary.discord.com",
        ]
        .contains(&host.as_str())
            && path.starts_with("/api/webhooks")
        {
            WebhookFormat::Discord
        } else {
            WebhookFormat::Json
        }
    }
}

impl std::str::FromStr for WebhookFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "slack" => Ok(Self::Slack),
            "discord" => Ok(Self::Discord),
            "json" => Ok(Self::Json),
            _ => Err(format!(
                "{s:?} is not a webhook format: one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// Where notifications go, checked: an http(s) URL and its body format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    url: String,
    format: WebhookFormat,
}

impl Webhook {
    /// Checks `url` (so a typo fails before training starts) and settles
    /// `Auto` by the URL.
    pub fn new(url: &str, format: WebhookFormat) -> Result<Self, WebhookError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(WebhookError::BadUrl(url.to_string()));
        }
        Ok(Self {
            url: url.to_string(),
            format: format.for_url(url),
        })
    }

    /// The URL posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The body format (never `Auto`).
    pub fn format(&self) -> WebhookFormat {
        self.format
    }
}

/// An [`EventSink`] that POSTs each `alert` and the `run_finished` event to
/// a webhook from a thread of its own; other events are ignored.
pub struct WebhookSink {
    format: WebhookFormat,
    tx: Option<SyncSender<Value>>,
    /// Closed by the posting thread once everything queued was sent.
    done: std::sync::mpsc::Receiver<()>,
}

/// Why the webhook could not be used.
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
    /// Starts the posting thread.
    pub fn new(hook: &Webhook) -> Result<Self, WebhookError> {
        let url = hook.url.clone();
        let (tx, rx) = sync_channel::<Value>(QUEUE);
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
        Ok(Self {
            format: hook.format,
            tx: Some(tx),
            done,
        })
    }
}

impl Drop for WebhookSink {
    /// The run is over: post what is queued (its end is the last event)
    /// before the process may exit, for at most [`DRAIN`].
    fn drop(&mut self) {
        self.tx.take();
        let _ = self.done.recv_timeout(DRAIN);
    }
}

impl EventSink for WebhookSink {
    fn emit(&mut self, event: &Event) {
        let Some(body) = body(self.format, event) else {
            return;
        };
        let Some(tx) = &self.tx else { return };
        match tx.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("alert webhook is behind; dropped a notification")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// What a notification says, whatever the format.
struct Notice {
    title: String,
    text: String,
    /// 0xRRGGBB: green for completed, red for failed or critical, amber
    /// for the rest.
    color: u32,
    fields: Vec<(&'static str, String)>,
}

const GREEN: u32 = 0x3ecf8e;
const AMBER: u32 = 0xf5b041;
const RED: u32 = 0xff5d5d;

fn notice(event: &Event) -> Option<Notice> {
    match &event.kind {
        EventKind::Alert(a) => Some(alert_notice(&event.run_id, a)),
        EventKind::RunFinished(f) => Some(finished_notice(&event.run_id, f)),
        _ => None,
    }
}

fn alert_notice(run_id: &str, a: &Alert) -> Notice {
    let critical = a.severity == AlertSeverity::Critical;
    let mut fields = vec![("rule", a.rule.clone())];
    if let Some(action) = &a.action {
        fields.push(("action", action.clone()));
    }
    Notice {
        title: format!("mnist-monitor run {run_id}: {}", a.rule.replace('_', " ")),
        text: a.message.clone(),
        color: if critical { RED } else { AMBER },
        fields,
    }
}

fn finished_notice(run_id: &str, f: &RunFinished) -> Notice {
    let (word, color) = match f.status {
        RunStatus::Completed => ("completed", GREEN),
        RunStatus::Stopped => ("stopped", AMBER),
        RunStatus::Failed => ("failed", RED),
    };
    let text = match (&f.error, f.test_accuracy) {
        (Some(e), _) => e.clone(),
        (None, Some(acc)) => format!("test accuracy {:.2}%", acc * 100.0),
        (None, None) => format!("after {} epochs", f.epochs_completed),
    };
    let mut fields = vec![
        ("epochs", f.epochs_completed.to_string()),
        ("steps", f.steps.to_string()),
        ("training time", format!("{:.0} s", f.train_seconds)),
    ];
    if let Some(acc) = f.test_accuracy {
        fields.push(("test accuracy", format!("{:.2}%", acc * 100.0)));
    }
    if let Some(f1) = f.test_f1_macro {
        fields.push(("test macro F1", format!("{f1:.4}")));
    }
    Notice {
        title: format!("mnist-monitor run {run_id} {word}"),
        text,
        color,
        fields,
    }
}

/// The body posted for `event` in `format`, or `None` for events that are
/// not notifications.
pub fn body(format: WebhookFormat, event: &Event) -> Option<Value> {
    let n = notice(event)?;
    Some(match format {
        WebhookFormat::Slack => json!({
            "text": format!("{}: {}", n.title, n.text),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", n.title, n.text)}},
                {"type": "section", "fields": n.fields.iter().map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")})).collect::<Vec<_>>()},
            ],
        }),
        WebhookFormat::Discord => json!({
            "username": "mnist-monitor",
            "embeds": [{
                "title": n.title,
                "description": n.text,
                "color": n.color,
                "fields": n.fields.iter().map(|(k, v)| json!({"name": k, "value": v, "inline": true})).collect::<Vec<_>>(),
            }],
        }),
        WebhookFormat::Json | WebhookFormat::Auto => {
            let mut body = json!({
                "text": format!("{}: {}", n.title, n.text),
                "run_id": event.run_id,
                "seq": event.seq,
                "ts_ms": event.ts_ms,
                "event": event.kind.name(),
            });
            match &event.kind {
                EventKind::Alert(a) => body["alert"] = json!(a),
                EventKind::RunFinished(f) => body["run_finished"] = json!(f),
                _ => {}
            }
            body
        }
    })
}
