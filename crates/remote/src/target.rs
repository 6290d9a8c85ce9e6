//! Where to connect: `user@host[:port]` or a `Host` alias of `~/.ssh/config`
//! (HostName, User, Port and IdentityFile honoured, first value wins as in
//! OpenSSH; `Match` blocks are skipped).

use std::path::{Path, PathBuf};

/// An SSH destination, resolved from `user@host[:port]` or a `~/.ssh/config` alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the user typed, for messages.
    pub alias: String,
    /// Host name or address to connect to: the config's `HostName` (`%h`
    /// expanded), else the name typed.
    pub host: String,
    /// TCP port: from the spec, else the config's `Port`, else 22.
    pub port: u16,
    /// User to log in as: from the spec, else the config's `User`, else
    /// `$USER`, else `root`.
    pub user: String,
    /// From the config; the default key files are tried after these.
    pub identity_files: Vec<PathBuf>,
}

/// A host spec that is not `user@host[:port]` or an alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(String);

impl Target {
    /// Resolves `spec` against the ssh config at `config` (if it exists).
    pub fn resolve(spec: &str, config: Option<&Path>) -> Result<Target, BadTarget> {
        Self::resolve_spec(spec, config).map_err(BadTarget)
    }

    fn resolve_spec(spec: &str, config: Option<&Path>) -> Result<Target, String> {
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(format!("{spec:?}: empty user name before '@'")),
            None => (None, spec),
        };
        let (name, port) = split_port(rest)?;
        if name.is_empty() {
            return Err(format!("{spec:?}: no host name"));
        }
        let text = config
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let found = lookup(&text, name);
        let home = home();
        Ok(Target {
            alias: spec.to_string(),
            host: found
                .hostname
                .clone()
                .unwrap_or_else(|| name.to_string())
                .replace("%h", name),
            port: match port {
                Some(p) => p,
                None => match &found.port {
                    Some(p) => p.parse().map_err(|_| {
                        format!("~/.ssh/config: Port {p:?} for {name} is not a port number")
                    })?,
                    None => 22,
                },
            },
            user: user
                .or(found.user)
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "root".into()),
            identity_files: found
                .identity_files
                .iter()
                .map(|f| expand_tilde(&f.replace("%h", name), &home))
                .collect(),
        })
    }
}

/// The user's home directory: `$HOME`, or `/` when unset.
pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn expand_tilde(path: &str, home: &Path) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(path),
    }
}

fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    // [v6addr]:port, host:port, or host.
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']'"))?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((
                addr,
                Some(
                    p.parse()
                        .map_err(|_| format!("{s:?}: {p:?} is not a port (1-65535)"))?,
                ),
            )),
            None => Ok((addr, None)),
        };
    }
    match s.split_once(':') {
        Some((h, p)) if !p.contains(':') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("{s:?}: {p:?} is not a port (1-65535)"))?;
            if port == 0 {
                return Err(format!("{s:?}: port must be 1-65535"));
            }
            Ok((h, Some(port)))
        }
        _ => Ok((s, None)),
    }
}

#[derive(Default, Debug)]
struct Found {
    hostname: Option<String>,
    user: Option<String>,
    port: Option<String>,
    identity_files: Vec<String>,
}

fn lookup(text: &str, name: &str) -> Found {
    let mut found = Found::default();
    // Options before the first Host line apply to every host.
    let mut active = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (
                k.to_ascii_lowercase(),
                v.trim_start_matches(|c: char| c.is_whitespace() || c == '=')
                    .trim(),
            ),
            None => continue,
        };
        let value = value.trim_matches('"');
        match key.as_str() {
            "host" => active = host_matches(value, name),
            "match" => active = false,
            _ if !active => {}
            "hostname" => {
                found.hostname.get_or_insert_with(|| value.to_string());
            }
            "user" => {
                found.user.get_or_insert_with(|| value.to_string());
            }
            "port" => {
                found.port.get_or_insert_with(|| value.to_string());
            }
            "identityfile" => found.identity_files.push(value.to_string()),
            _ => {}
        }
    }
    found
}

/// OpenSSH `Host` patterns: whitespace-separated, `*` and `?` wildcards,
/// `!` negates (a negated match rejects the block).
fn host_matches(patterns: &str, name: &str) -> bool {
    let mut any = false;
    for p in patterns.split_whitespace() {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, name) {
                return false;
            }
        } else if glob(p, name) {
            any = true;
        }
    }
    any
}

fn glob(pattern: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], s) || (!s.is_empty() && rec(p, &s[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "
# global default comes first in OpenSSH files only if placed first
Host gpu gpu-box
    HostName 10.0.0.7
    User alice
    Port 2222
    IdentityFile ~/.ssh/id_gpu

Host *.lab !bad.lab
    User labuser

Host *
    User fallback
    IdentityFile ~/.ssh/id_all
";

    fn resolve(spec: &str) -> Target {
        // One file per call: tests run in parallel threads of one process.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("mm-sshcfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(&path, CONFIG).unwrap();
        Target::resolve(spec, Some(&path)).unwrap()
    }

    #[test]
    fn an_alias_takes_hostname_user_port_and_keys_first_value_wins() {
        let t = resolve("gpu");
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.0.0.7", 2222, "alice")
        );
        let names: Vec<String> = t
            .identity_files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["id_gpu", "id_all"]);
    }

    #[test]
    fn command_line_user_and_port_beat_the_config() {
        let t = resolve("bob@gpu-box:2200");
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.0.0.7", 2200, "bob")
        );
    }

    #[test]
    fn wildcards_and_negation() {
        assert_eq!(resolve("n1.lab").user, "labuser");
        assert_eq!(resolve("bad.lab").user, "fallback");
        let t = resolve("plain.example.org");
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("plain.example.org", 22, "fallback")
        );
    }

    #[test]
    fn bad_ports_are_named() {
        let e = Target::resolve("h:99999", None).unwrap_err().to_string();
        assert!(e.contains("not a port"), "{e}");
        assert_eq!(Target::resolve("[::1]:2022", None).unwrap().port, 2022);
    }
}
