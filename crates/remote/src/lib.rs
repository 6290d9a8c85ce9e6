//! # mnist-remote: SSH, the way `ssh` itself behaves
//!
//! Owns talking to a remote host with russh: resolving `user@host[:port]` or
//! a `~/.ssh/config` alias ([`Target`]), checking the host key against
//! `known_hosts` (hashed entries too) and refusing a changed or unknown key,
//! authenticating by ssh-agent, key files (passphrases asked on a terminal)
//! and passwords ([`connect`]), running commands and uploading a file
//! ([`exec`]), and forwarding a local port to the remote monitor over
//! `direct-tcpip` ([`forward`]), and polling a fleet of GPU hosts
//! ([`fleet`]), and the remote-run protocol ([`run`]: the files a run
//! started over SSH keeps on its host, readiness from a machine-readable
//! file, stopping it through the tunnel). Secrets never leave this crate:
//! they are not logged, not put in argv, not put in events.

pub mod client;
pub mod exec;
pub mod fleet;
pub mod forward;
pub mod run;
pub mod target;

pub use client::{check_host_key, connect, ConnectOptions, Session, SshError};
pub use target::Target;
