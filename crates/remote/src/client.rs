//! Connecting: host key policy, then authentication (agent, key files,
//! password), never putting a secret in argv, logs or events.

use crate::target::{home, Target};
use mnist_events::LockExt;
use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to connect: which known_hosts file and policy, extra key files,
/// prompting, timeout.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `~/.ssh/known_hosts` unless overridden.
    pub known_hosts: PathBuf,
    /// Trust and record a host seen for the first time.
    pub accept_new_host_key: bool,
    /// Key files given on the command line (`-i`), tried before the config's.
    pub identities: Vec<PathBuf>,
    /// Whether we may ask for passphrases and passwords on the terminal.
    pub interactive: bool,
    /// Longest wait for the connection and key exchange; past it the host
    /// counts as unreachable.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            known_hosts: home().join(".ssh").join("known_hosts"),
            accept_new_host_key: false,
            identities: Vec::new(),
            interactive: std::io::IsTerminal::is_terminal(&std::io::stdin()),
            timeout: Duration::from_secs(15),
        }
    }
}

/// Why connecting to a host or working on it over SSH failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// No answer within the timeout, or the TCP connection failed.
    #[error("cannot reach {target}: {reason}")]
    Unreachable {
        /// `host:port` as dialled.
        target: String,
        /// What the network said.
        reason: String,
    },
    /// The host key was refused (unknown, changed, or a certificate); holds
    /// the sentence to print.
    #[error("{0}")]
    HostKey(String),
    /// Every authentication method failed; holds a message listing what
    /// was tried.
    #[error("{0}")]
    Auth(String),
    /// Any other failure once connected: the SSH protocol, a channel, a remote write.
    #[error("ssh: {0}")]
    Protocol(String),
}

impl SshError {
    /// Worth retrying (the host may come back), unlike a key or auth problem.
    pub fn is_transient(&self) -> bool {
        matches!(self, SshError::Unreachable { .. } | SshError::Protocol(_))
    }
}

/// Checks the server's key against known_hosts before anything is sent.
pub struct HostKeyPolicy {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    /// Why the key was refused, for the error message.
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyPolicy {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.refusal.locked() = Some(format!(
                "{}: the server offered a host certificate; only plain host keys in {} are supported",
                self.host,
                self.known_hosts.display()
            ));
            return Ok(false);
        };
        match check_host_key(
            &self.host,
            self.port,
            key,
            &self.known_hosts,
            self.accept_new,
        ) {
            Ok(()) => Ok(true),
            Err(refused) => {
                *self.refusal.locked() = Some(refused.to_string());
                Ok(false)
            }
        }
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The known_hosts rule, as OpenSSH applies it: a matching recorded key
/// passes; a different key is refused (with the line to inspect), whether
/// it is of the recorded type or of another one (a host that now offers
/// only an ECDSA key where an Ed25519 key is recorded has changed
/// identity); only a host with no key recorded at all is new, and is
/// refused unless `accept_new`, which records it.
pub fn check_host_key(
    host: &str,
    port: u16,
    key: &PublicKey,
    known_hosts: &Path,
    accept_new: bool,
) -> Result<(), SshError> {
    host_key_verdict(host, port, key, known_hosts, accept_new).map_err(SshError::HostKey)
}

/// [`check_host_key`]'s rule, with the refusal as the sentence to print.
fn host_key_verdict(
    host: &str,
    port: u16,
    key: &PublicKey,
    known_hosts: &Path,
    accept_new: bool,
) -> Result<(), String> {
    let shown = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let recorded_other_type = || {
        keys::known_hosts::known_host_keys_path(host, port, known_hosts)
            .ok()
            .and_then(|keys| {
                keys.into_iter()
                    .find(|(_, k)| k.algorithm() != key.algorithm())
            })
    };
    match keys::check_known_hosts_path(host, port, key, known_hosts) {
        Ok(true) => Ok(()),
        Ok(false) if recorded_other_type().is_some() => {
            let (line, recorded) = recorded_other_type().expect("checked just above");
            Err(format!(
                "HOST KEY MISMATCH for {shown}: it now presents only {} key {}, but {}:{} records its {} key {}. \
                 A host does not lose its key: someone may be intercepting the connection, or the host was \
                 reinstalled; inspect that line and remove it only if you know why the key changed",
                key.algorithm(),
                fingerprint(key),
                known_hosts.display(),
                real_line(known_hosts, line),
                recorded.algorithm(),
                fingerprint(&recorded),
            ))
        }
        Ok(false) if accept_new => {
            if let Some(dir) = known_hosts.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            keys::known_hosts::learn_known_hosts_path(host, port, key, known_hosts).map_err(|e| {
                format!("cannot record the host key of {shown} in {}: {e}", known_hosts.display())
            })?;
            tracing::warn!("recorded the new host key of {shown} ({}) in {}", fingerprint(key), known_hosts.display());
            Ok(())
        }
        Ok(false) => Err(format!(
            "the host key of {shown} is not known ({} key {}); refusing to connect. \
             Check the fingerprint with the server's administrator, then run again with \
             --accept-new-host-key to record it in {}",
            key.algorithm(),
            fingerprint(key),
            known_hosts.display()
        )),
        Err(keys::Error::KeyChanged { line }) => Err(format!(
            "HOST KEY MISMATCH for {shown}: it now presents {} key {}, which differs from the one recorded at {}:{}. \
             Someone may be intercepting the connection, or the host was reinstalled; inspect that line \
             and remove it only if you know why the key changed",
            key.algorithm(),
            fingerprint(key),
            known_hosts.display(),
            real_line(known_hosts, line)
        )),
        Err(e) => Err(format!("cannot read {}: {e}", known_hosts.display())),
    }
}

/// russh numbers known_hosts lines without counting comment lines; give the
/// user the line number their editor shows.
fn real_line(path: &Path, counted: usize) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else {
        return counted;
    };
    let mut seen = 0;
    for (i, l) in text.lines().enumerate() {
        if l.starts_with('#') {
            continue;
        }
        seen += 1;
        if seen == counted {
            return i + 1;
        }
    }
    counted
}

/// A connected, authenticated SSH session.
pub type Session = Handle<HostKeyPolicy>;

/// Connects and authenticates.
pub async fn connect(target: &Target, opts: &ConnectOptions) -> Result<Session, SshError> {
    let config = Arc::new(client::Config {
        // Notice a dead peer (sshd killed, laptop suspended) within ~30 s.
        keepalive_interval: Some(Duration::from_secs(10)),
        keepalive_max: 3,
        ..Default::default()
    });
    let refusal = Arc::new(Mutex::new(None));
    let policy = HostKeyPolicy {
        host: target.host.clone(),
        port: target.port,
        known_hosts: opts.known_hosts.clone(),
        accept_new: opts.accept_new_host_key,
        refusal: refusal.clone(),
    };
    let addr = (target.host.as_str(), target.port);
    let connecting = client::connect(config, addr, policy);
    let mut session = match tokio::time::timeout(opts.timeout, connecting).await {
        Err(_) => {
            return Err(SshError::Unreachable {
                target: target.alias.clone(),
                reason: format!("no answer within {} s", opts.timeout.as_secs()),
            })
        }
        Ok(Err(e)) => {
            if let Some(why) = refusal.locked().take() {
                return Err(SshError::HostKey(why));
            }
            return Err(match e {
                russh::Error::IO(io) => SshError::Unreachable {
                    target: format!("{}:{}", target.host, target.port),
                    reason: io.to_string(),
                },
                other => SshError::Protocol(other.to_string()),
            });
        }
        Ok(Ok(s)) => s,
    };
    authenticate(&mut session, target, opts).await?;
    Ok(session)
}

/// Tries ssh-agent, then key files, then (on a terminal) a password, the
/// way `ssh` does; the error lists what was tried.
async fn authenticate(
    session: &mut Session,
    target: &Target,
    opts: &ConnectOptions,
) -> Result<(), SshError> {
    let user = target.user.as_str();
    let mut tried: Vec<String> = Vec::new();
    let rsa_hash = session
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    if with_agent(session, user, rsa_hash, &mut tried).await
        || with_key_files(session, target, opts, rsa_hash, &mut tried).await?
        || with_password(session, target, opts, &mut tried).await?
    {
        return Ok(());
    }
    Err(SshError::Auth(format!(
        "{user}@{}:{} refused every key we have: tried {}. Add your public key to ~/.ssh/authorized_keys there, \
         load it into ssh-agent, or pass -i KEYFILE",
        target.host,
        target.port,
        if tried.is_empty() { "nothing (no agent, no key files in ~/.ssh)".to_string() } else { tried.join(", ") }
    )))
}

/// The hash an RSA key signs with (the best the server supports).
type RsaHash = Option<russh::keys::HashAlg>;

/// 1. Every identity of ssh-agent, when one runs.
async fn with_agent(
    session: &mut Session,
    user: &str,
    rsa_hash: RsaHash,
    tried: &mut Vec<String>,
) -> bool {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return false;
    }
    let mut agent = match keys::agent::client::AgentClient::connect_env().await {
        Ok(agent) => agent,
        Err(e) => {
            tracing::debug!("ssh-agent: {e}");
            return false;
        }
    };
    for id in agent.request_identities().await.unwrap_or_default() {
        let key = id.public_key().into_owned();
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        let accepted = session
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
            .is_ok_and(|r| r.success());
        if accepted {
            return true;
        }
    }
    tried.push("ssh-agent".into());
    false
}

/// 2. Key files: `-i` first, then the config's, then the defaults.
async fn with_key_files(
    session: &mut Session,
    target: &Target,
    opts: &ConnectOptions,
    rsa_hash: RsaHash,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    let ssh_dir = home().join(".ssh");
    let mut files: Vec<PathBuf> = opts.identities.clone();
    files.extend(target.identity_files.iter().cloned());
    files.extend(
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| ssh_dir.join(n)),
    );
    let mut seen = std::collections::HashSet::new();
    for file in files {
        if !seen.insert(file.clone()) || !file.exists() {
            continue;
        }
        let Some(key) = load_key(&file, opts.interactive, tried) else {
            continue;
        };
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        let with_hash = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        match session
            .authenticate_publickey(&target.user, with_hash)
            .await
        {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => tried.push(format!("{} (not accepted)", file.display())),
            Err(e) => return Err(SshError::Protocol(e.to_string())),
        }
    }
    Ok(false)
}

/// A private key file, asking for its passphrase on a terminal.
fn load_key(
    file: &std::path::Path,
    interactive: bool,
    tried: &mut Vec<String>,
) -> Option<keys::PrivateKey> {
    match keys::load_secret_key(file, None) {
        Ok(k) => Some(k),
        Err(keys::Error::KeyIsEncrypted) if !interactive => {
            tried.push(format!(
                "{} (encrypted; no terminal to ask for its passphrase)",
                file.display()
            ));
            None
        }
        Err(keys::Error::KeyIsEncrypted) => {
            let pass =
                rpassword::prompt_password(format!("passphrase for {}: ", file.display())).ok()?;
            let key = keys::load_secret_key(file, Some(&pass)).ok();
            if key.is_none() {
                tried.push(format!("{} (wrong passphrase)", file.display()));
            }
            key
        }
        Err(e) => {
            tried.push(format!("{} (unreadable: {e})", file.display()));
            None
        }
    }
}

/// 3. A password, only on a terminal (three tries).
async fn with_password(
    session: &mut Session,
    target: &Target,
    opts: &ConnectOptions,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    if !opts.interactive {
        return Ok(false);
    }
    for _ in 0..3 {
        let prompt = format!("{}@{}'s password: ", target.user, target.host);
        let Ok(pass) = rpassword::prompt_password(prompt) else {
            break;
        };
        match session.authenticate_password(&target.user, pass).await {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => tried.push("password (rejected)".into()),
            Err(e) => return Err(SshError::Protocol(e.to_string())),
        }
    }
    Ok(false)
}
