//! Local port forwarding over `direct-tcpip` (what `ssh -L` does), with a
//! session that can be replaced while the listener stays up: when the SSH
//! connection drops and comes back, new connections use the new session and
//! the browser's websocket reconnects to the same local URL.

use crate::client::Session;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The current session, `None` while reconnecting.
pub type SessionSlot = watch::Receiver<Option<Arc<Session>>>;

/// Counts the connections a tunnel is still delivering to, so that a
/// command whose remote run just ended can let the last bytes (the end of
/// the run, the websocket's close frame) reach the browser before it exits.
#[derive(Debug, Default)]
pub struct OpenConnections(AtomicUsize);

impl OpenConnections {
    /// Connections still delivering bytes from the remote side.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits until no connection has anything left to deliver, or `grace`.
    pub async fn drained(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn track(self: &Arc<Self>) -> Delivering {
        self.0.fetch_add(1, Ordering::SeqCst);
        Delivering(self.clone())
    }
}

/// One connection that may still receive bytes from the remote side.
struct Delivering(Arc<OpenConnections>);

impl Drop for Delivering {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forwards every connection accepted on `listener` to
/// `remote_host:remote_port` as seen from the SSH server, counting them in
/// `open`. Runs until the listener fails.
pub async fn forward(
    listener: TcpListener,
    mut slot: SessionSlot,
    remote_host: String,
    remote_port: u16,
    open: Arc<OpenConnections>,
) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("tunnel listener: {e}");
                return;
            }
        };
        // Wait a while for a session if we are between connections.
        let session = {
            let wait = slot.wait_for(|s| s.as_ref().is_some_and(|s| !s.is_closed()));
            match tokio::time::timeout(Duration::from_secs(30), wait).await {
                Ok(Ok(s)) => s.clone().expect("checked"),
                _ => continue, // drops the socket: the browser retries
            }
        };
        let host = remote_host.clone();
        let delivering = open.track();
        tokio::spawn(async move {
            let channel = match session
                .channel_open_direct_tcpip(
                    host.clone(),
                    remote_port as u32,
                    peer.ip().to_string(),
                    peer.port() as u32,
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("tunnel to {host}:{remote_port}: {e}");
                    return;
                }
            };
            let (mut from_remote, mut to_remote) = tokio::io::split(channel.into_stream());
            let (mut from_local, mut to_local) = socket.into_split();
            let up = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_local, &mut to_remote).await;
                let _ = to_remote.shutdown().await;
            });
            let _ = tokio::io::copy(&mut from_remote, &mut to_local).await;
            let _ = to_local.shutdown().await;
            drop(delivering);
            // The remote end has closed: what the browser still sends has
            // no one to read it.
            up.abort();
        });
    }
}
