//! The remote-run protocol: where a run that `remote train` starts lives on
//! its host, and how this side learns that its monitor serves.
//!
//! Under the remote directory (`--remote-dir`, relative to the remote home):
//! `runs/`, `checkpoints/`, `datasets/` as for a local run, and for each run
//! started over SSH `remote/<run-id>.`
//! - `token`: the monitor's token, written here over the SSH channel (0600);
//! - `log`, `pid`: output and process id of a detached run;
//! - `ready`: [`Ready`] as JSON, written atomically by
//!   `train --ready-file` once the monitor listens. Its appearance is the
//!   readiness signal; `remote watch` reads it to find a run's port.

use crate::exec::{exec_capture, shell_quote};
use crate::{Session, SshError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// What a run's monitor tells the launcher once it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The monitor's port on the host's loopback.
    pub port: u16,
    /// The `train` process.
    pub pid: u32,
    /// The run it serves.
    pub run_id: String,
}

/// Writes `ready` to `path` atomically (a temporary file, then a rename), so
/// that a reader never sees half of it. Called on the host by `train`.
pub fn write_ready(path: &Path, ready: &Ready) -> std::io::Result<()> {
    let tmp = path.with_extension("ready.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&tmp, serde_json::to_vec(ready).expect("serialises"))?;
    std::fs::rename(&tmp, path)
}

/// The files of one run under the remote directory (paths as the remote
/// shell sees them, relative to the remote home).
#[derive(Debug, Clone)]
pub struct RunFiles {
    dir: String,
    run_id: String,
}

impl RunFiles {
    /// The files of run `run_id` under `remote_dir`.
    pub fn new(remote_dir: &str, run_id: &str) -> Self {
        Self {
            dir: remote_dir.to_string(),
            run_id: run_id.to_string(),
        }
    }

    /// The remote directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// `remote/<run-id>.<ext>` under the remote directory.
    pub fn file(&self, ext: &str) -> String {
        format!("{}/remote/{}.{ext}", self.dir, self.run_id)
    }

    /// The same, quoted for the remote shell.
    pub fn quoted(&self, ext: &str) -> String {
        shell_quote(&self.file(ext))
    }
}

/// Why a run never became ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// Talking to the host over SSH failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The detached run's process ended before its ready file appeared;
    /// `log` is its output.
    #[error("the run exited before serving:\n{log}")]
    Exited {
        /// Its output until then.
        log: String,
    },
    /// No ready file within the timeout (the `Duration` waited).
    #[error("the run did not start its monitor within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// Reads the run's ready file, if it is there and whole.
pub async fn read_ready(session: &Session, files: &RunFiles) -> Result<Option<Ready>, SshError> {
    let out = exec_capture(
        session,
        &format!("cat {} 2>/dev/null", files.quoted("ready")),
    )
    .await?;
    Ok(serde_json::from_str(out.stdout.trim()).ok())
}

/// Waits for the run's ready file. With `detached`, also watches its pid
/// file and fails with its log when the process is gone first.
pub async fn wait_ready(
    session: &Session,
    files: &RunFiles,
    detached: bool,
    timeout: Duration,
) -> Result<Ready, NotReady> {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        if let Some(ready) = read_ready(session, files).await? {
            return Ok(ready);
        }
        if detached {
            let alive = exec_capture(
                session,
                &format!("kill -0 $(cat {}) 2>/dev/null", files.quoted("pid")),
            )
            .await?;
            // Once more: it may have become ready and finished in between.
            if !alive.success() && read_ready(session, files).await?.is_none() {
                let log = exec_capture(session, &format!("cat {}", files.quoted("log"))).await?;
                return Err(NotReady::Exited {
                    log: log.stdout.trim().to_string(),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(NotReady::Timeout(timeout))
}

/// The newest run's files under `remote_dir` (by its ready file's time).
pub async fn newest_run(session: &Session, remote_dir: &str) -> Result<Option<String>, SshError> {
    let out = exec_capture(
        session,
        &format!(
            "ls -t {}/remote/*.ready 2>/dev/null | head -n 1",
            shell_quote(remote_dir)
        ),
    )
    .await?;
    Ok(Path::new(out.stdout.trim())
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned()))
}

/// Asks the monitor behind `local` (the tunnel's end) to stop `run_id`
/// after its current batch: `POST /api/runs/{id}/stop` with the token.
pub async fn request_stop(
    local: std::net::SocketAddr,
    run_id: &str,
    token: &str,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(local).await?;
    let req = format!(
        "POST /api/runs/{run_id}/stop HTTP/1.1\r\nhost: {local}\r\nauthorization: Bearer {token}\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp);
    if text.starts_with("HTTP/1.1 202") {
        Ok(())
    } else {
        Err(std::io::Error::other(
            text.lines().next().unwrap_or("no answer").to_string(),
        ))
    }
}
