//! The GPU fleet: every host polled over SSH (`mnist-monitor stats --json`
//! there), keeping its last snapshot or why it is down. One connection per
//! host, kept open between polls; a host that is down is retried with
//! backoff and shown as down meanwhile.

use crate::client::{connect, ConnectOptions, Session};
use crate::exec::{exec_capture, shell_quote};
use crate::target::Target;
use mnist_events::HardwareSnapshot;
use mnist_events::LockExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether a fleet host answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Not polled yet.
    Connecting,
    /// Its last poll answered.
    Up,
    /// It cannot be reached, or its last poll failed.
    Down,
}

/// One fleet host as last polled: the row `/api/fleet` lists, whoever
/// polls it. `S` is what its stats hold: a whole `stats --json` snapshot
/// over SSH, the few series Prometheus keeps with `--fleet-prometheus`.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus<S = HardwareSnapshot> {
    /// As given in `--hosts` (Prometheus' `instance`).
    pub host: String,
    /// Whether it answers.
    pub state: HostState,
    /// Why it is down (or why the last poll failed).
    pub error: Option<String>,
    /// When the last successful snapshot arrived (Unix ms).
    pub last_ok_ms: Option<u64>,
    /// Its last snapshot, kept while it is down.
    pub stats: Option<S>,
}

/// The GPU hosts polled in the background, one status per host.
#[derive(Debug)]
pub struct Fleet {
    hosts: Vec<Arc<Mutex<HostStatus>>>,
}

impl Fleet {
    /// Starts polling every host every `interval` on a thread of its own.
    pub fn start(
        hosts: Vec<String>,
        opts: ConnectOptions,
        remote_bin: String,
        interval: Duration,
    ) -> Arc<Fleet> {
        let statuses: Vec<Arc<Mutex<HostStatus>>> = hosts
            .iter()
            .map(|h| {
                Arc::new(Mutex::new(HostStatus {
                    host: h.clone(),
                    state: HostState::Connecting,
                    error: None,
                    last_ok_ms: None,
                    stats: None,
                }))
            })
            .collect();
        let fleet = Arc::new(Fleet {
            hosts: statuses.clone(),
        });
        std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let config = crate::target::home().join(".ssh").join("config");
                    let mut tasks = Vec::new();
                    for (name, status) in hosts.into_iter().zip(statuses) {
                        let opts = ConnectOptions {
                            interactive: false,
                            ..opts.clone()
                        };
                        let bin = remote_bin.clone();
                        let config = config.clone();
                        tasks.push(tokio::spawn(async move {
                            poll_host(name, config, opts, bin, interval, status).await
                        }));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })
            .expect("spawn the fleet poller");
        fleet
    }

    /// Every host's status now, in the order the hosts were given.
    pub fn snapshot(&self) -> Vec<HostStatus> {
        self.hosts.iter().map(|h| h.locked().clone()).collect()
    }
}

fn set(status: &Mutex<HostStatus>, f: impl FnOnce(&mut HostStatus)) {
    f(&mut status.locked());
}

async fn poll_host(
    name: String,
    config: std::path::PathBuf,
    opts: ConnectOptions,
    bin: String,
    interval: Duration,
    status: Arc<Mutex<HostStatus>>,
) {
    let target = match Target::resolve(&name, Some(&config)) {
        Ok(t) => t,
        Err(e) => {
            set(&status, |s| {
                s.state = HostState::Down;
                s.error = Some(e.to_string());
            });
            return;
        }
    };
    let command = format!("{} stats --json", shell_quote(&bin));
    let mut backoff = interval;
    let mut session: Option<Session> = None;
    loop {
        if session.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(&target, &opts).await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    set(&status, |s| {
                        s.state = HostState::Down;
                        s.error = Some(e.to_string());
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            }
        }
        let result = exec_capture(session.as_ref().expect("connected"), &command).await;
        match result {
            Ok(out) if out.success() => match serde_json::from_str::<HardwareSnapshot>(&out.stdout)
            {
                Ok(stats) => {
                    backoff = interval;
                    set(&status, |s| {
                        s.state = HostState::Up;
                        s.error = None;
                        s.last_ok_ms = Some(mnist_events::now_ms());
                        s.stats = Some(stats);
                    });
                }
                Err(e) => set(&status, |s| {
                    s.state = HostState::Down;
                    s.error = Some(format!(
                        "`{command}` printed something that is not a stats snapshot: {e}"
                    ));
                }),
            },
            Ok(out) => set(&status, |s| {
                s.state = HostState::Down;
                s.error = Some(format!(
                    "`{command}` failed on {name} (exit {:?}): {}; is mnist-monitor installed there? (--fleet-remote-bin)",
                    out.status,
                    out.stderr.trim()
                ));
            }),
            Err(e) => {
                session = None;
                set(&status, |s| {
                    s.state = HostState::Down;
                    s.error = Some(e.to_string());
                });
            }
        }
        tokio::time::sleep(interval).await;
    }
}
