//! Running commands on the host, and copying a file there, over one
//! session's channels.

use crate::client::{Session, SshError};
use russh::ChannelMsg;
use std::path::Path;

/// Which of the remote command's streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error (SSH extended data of type 1).
    Stderr,
}

fn proto(e: russh::Error) -> SshError {
    SshError::Protocol(e.to_string())
}

/// Runs `command` through the remote user's shell, handing output to
/// `on_output` as it arrives. Returns the exit status (`None` if the command
/// was killed by a signal or the connection dropped).
pub async fn exec(
    session: &Session,
    command: &str,
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<Option<u32>, SshError> {
    let mut channel = session.channel_open_session().await.map_err(proto)?;
    channel.exec(true, command).await.map_err(proto)?;
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => on_output(Stream::Stdout, &data),
            ChannelMsg::ExtendedData { data, ext: 1 } => on_output(Stream::Stderr, &data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    Ok(status)
}

/// A finished remote command.
#[derive(Debug)]
pub struct Output {
    /// Exit status; `None` if it was killed by a signal or the connection dropped.
    pub status: Option<u32>,
    /// All it wrote to standard output, decoded as UTF-8 (lossily).
    pub stdout: String,
    /// All it wrote to standard error, decoded as UTF-8 (lossily).
    pub stderr: String,
}

impl Output {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// Runs `command` like [`exec`], collecting its whole output.
pub async fn exec_capture(session: &Session, command: &str) -> Result<Output, SshError> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = exec(session, command, |s, b| match s {
        Stream::Stdout => out.extend_from_slice(b),
        Stream::Stderr => err.extend_from_slice(b),
    })
    .await?;
    Ok(Output {
        status,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Copies `local` to `remote` (made executable), through a temporary name
/// renamed into place, so a dropped connection never leaves half a binary.
pub async fn upload(session: &Session, local: &Path, remote: &str) -> Result<(), SshError> {
    let file = tokio::fs::File::open(local)
        .await
        .map_err(|e| SshError::Protocol(format!("cannot read {}: {e}", local.display())))?;
    write_file(session, file, remote, "755").await
}

/// Writes `data` to `remote` with permissions `mode` (octal, as `chmod`
/// takes it). The content travels on the channel, never on a command line
/// (which other users of the host could read in `ps`), and the file is
/// created private (umask 077) before `mode` is applied.
pub async fn write_file(
    session: &Session,
    data: impl tokio::io::AsyncRead + Unpin,
    remote: &str,
    mode: &str,
) -> Result<(), SshError> {
    let part = format!("{remote}.part");
    let dir = match remote.rsplit_once('/') {
        Some((d, _)) if !d.is_empty() => d.to_string(),
        _ => ".".to_string(),
    };
    let command = format!(
        "umask 077 && mkdir -p {d} && cat > {p} && chmod {m} {p} && mv -f {p} {r}",
        d = shell_quote(&dir),
        p = shell_quote(&part),
        m = shell_quote(mode),
        r = shell_quote(remote)
    );
    let mut channel = session.channel_open_session().await.map_err(proto)?;
    channel.exec(true, command).await.map_err(proto)?;
    channel.data(data).await.map_err(proto)?;
    channel.eof().await.map_err(proto)?;
    let mut status = None;
    let mut err = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
            _ => {}
        }
    }
    match status {
        Some(0) => Ok(()),
        _ => Err(SshError::Protocol(format!(
            "writing {remote} failed: {}",
            String::from_utf8_lossy(&err).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--lr"), "--lr");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
