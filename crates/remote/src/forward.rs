//! Local port forwarding over `direct-tcpip` (what `ssh -L` does), with a
//! session that can be replaced while the listener stays up: when the SSH
//! connection drops and comes back, new connections use the new session and
//! the browser's websocket reconnects to the same local URL.

use crate::client::Session;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The current session, `None` while reconnecting.
pub type SessionSlot = watch::Receiver<Option<Arc<Session>>>;

/// Forwards every connection accepted on `listener` to
/// `remote_host:remote_port` as seen from the SSH server. Runs until the
/// listener fails.
pub async fn forward(
    listener: TcpListener,
    mut slot: SessionSlot,
    remote_host: String,
    remote_port: u16,
) {
    loop {
        let (mut socket, peer) = match listener.accept().await {
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
            let mut stream = channel.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut socket, &mut stream).await;
        });
    }
}
