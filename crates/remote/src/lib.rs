//! # mnist-remote: SSH, the way `ssh` itself behaves
//!
//! Owns talking to a remote host with russh: resolving `user@host[:port]` or
//! a `~/.ssh/config` alias ([`Target`]), checking the host key against
//! `known_hosts` (hashed entries too) and refusing a changed or unknown key,
//! authenticating by ssh-agent, key files (passphrases asked on a terminal)
//! and passwords ([`connect`]), running commands and uploading a file
//! ([`exec`]), and forwarding a local port to the remote monitor over
//! `direct-tcpip` ([`forward`]), and polling a fleet of GPU hosts
//! ([`fleet`]). Secrets never leave this crate: they are not
//! logged, not put in argv, not put in events.
//!
//! What to run remotely (`mnist-monitor train --serve …`) is the binary's
//! business; this crate only knows SSH.

pub mod client;
pub mod exec;
pub mod fleet;
pub mod forward;
pub mod target;

pub use client::{check_host_key, connect, ConnectOptions, Session, SshError};
pub use target::Target;
