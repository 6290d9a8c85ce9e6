//! `remote train` and `remote watch` against a real OpenSSH `sshd` started
//! by the test on a loopback port, with its own host key, authorized_keys
//! and known_hosts (`.ci/run` installs openssh-server and openssh-client).
//! The "remote" mnist-monitor is this build's binary.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Sshd {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: apt-get install openssh-server (as .ci/run does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        keygen(&dir.join("host_ed25519"));
        keygen(&dir.join("client_ed25519"));
        std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        // sshd's privilege separation directory (root only).
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut sshd = Sshd {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        for _ in 0..10 {
            if sshd.restart() {
                return sshd;
            }
            sshd.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
        }
        panic!("sshd would not start (see above)");
    }

    /// Starts sshd on `self.port`; false if it exited (port taken).
    fn restart(&mut self) -> bool {
        let d = self.dir.display();
        std::fs::write(
            self.dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nLogLevel ERROR\n",
                port = self.port
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            // Its own process group, so that kill() takes its connection
            // handlers down too (but not the user sessions, which sshd
            // moves into sessions of their own, as a crash would leave them).
            .process_group(0)
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "sshd did not start on {}",
                self.port
            );
            // Exited: the port was taken meanwhile (another test's listener).
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                self.child = None;
                return false;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut banner = [0u8; 4];
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                if std::io::Read::read_exact(&mut s, &mut banner).is_ok() && &banner == b"SSH-" {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills sshd like a crash would: the listener and every connection
    /// handler under it (each runs in a session of its own, so a process
    /// group kill is not enough). Detached runs were reparented away from
    /// sshd when their shell exited, so they survive, as on a real host.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let mut victims = vec![c.id() as i32];
            let mut i = 0;
            while i < victims.len() {
                victims.extend(children_of(victims[i]));
                i += 1;
            }
            for pid in victims.iter().rev() {
                unsafe { libc_kill(*pid, 9) };
            }
            let _ = c.wait();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn host_pub(&self) -> String {
        std::fs::read_to_string(self.dir.join("host_ed25519.pub")).unwrap()
    }

    /// A known_hosts file that trusts this sshd.
    fn known_hosts(&self) -> PathBuf {
        let path = self.dir.join("known_hosts");
        let host_pub = self.host_pub();
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            &path,
            format!("# test\n[127.0.0.1]:{} {} {}\n", self.port, key[0], key[1]),
        )
        .unwrap();
        path
    }

    /// `Host ALIAS` in HOME/.ssh/config: HostName, Port, User (us) and
    /// IdentityFile pointing at this sshd.
    fn write_alias(&self, home: &Path, alias: &str) {
        let out = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8(out.stdout).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(
            home.join(".ssh/config"),
            format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
                self.port,
                user.trim(),
                self.client_key().display()
            ),
        )
        .unwrap();
    }

    fn client_key(&self) -> PathBuf {
        self.dir.join("client_ed25519")
    }

    /// `HOST -i KEY --known-hosts FILE`: how a remote command reaches and
    /// trusts this sshd.
    fn login(&self) -> [std::ffi::OsString; 5] {
        [
            self.host().into(),
            "-i".into(),
            self.client_key().into(),
            "--known-hosts".into(),
            self.known_hosts().into(),
        ]
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may contain spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `mnist-monitor remote …` with a private HOME (no agent, no ~/.ssh of ours).
fn remote(home: &Path) -> Command {
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let mut c = bin();
    c.env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .arg("remote");
    c
}

/// Reads `child`'s stream line by line until `pick` returns something.
fn wait_line<T>(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    what: &str,
    pick: impl Fn(&str) -> Option<T>,
) -> T {
    let mut seen = String::new();
    for line in lines {
        let line = line.unwrap();
        if let Some(v) = pick(&line) {
            return v;
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    panic!("never saw {what}; output was:\n{seen}");
}

/// A tunnel's URL as `remote train|watch` print it: where, and the token
/// of the host-side monitor that only this side knows.
struct Tunnel {
    base: String,
    token: String,
}

impl Tunnel {
    /// `path` with the token added to its query.
    fn path(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}token={}", self.token)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, self.path(path))
    }
}

fn url_in(line: &str) -> Option<Tunnel> {
    let start = line.find("http://127.0.0.1:")?;
    let url = line[start..].split_whitespace().next()?;
    let (base, token) = url.split_once("/?token=")?;
    Some(Tunnel {
        base: base.to_string(),
        token: token.to_string(),
    })
}

fn train_args(work: &Path) -> Vec<String> {
    let data = work.join("data");
    write_synthetic(&data, 3000, 200);
    [
        "--skip-verify",
        "--backend",
        "cpu",
        "--kernels",
        "4,4,4,4",
        "--batch-size",
        "10",
        // Long enough (a few seconds) that the tunnel is up before it
        // ends, also on a loaded machine.
        "--epochs",
        "6",
        "--val-size",
        "100",
        "--limit-test",
        "100",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data.display().to_string()])
    .collect()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn remote_train_streams_batches_through_the_tunnel() {
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&work.path().join("sshd"));
    let remote_dir = work.path().join("remote-home");
    let mut child = remote(&work.path().join("home"))
        .arg("train")
        .args(sshd.login())
        .arg("--remote-bin")
        .arg(env!("CARGO_BIN_EXE_mnist-monitor"))
        .arg("--remote-dir")
        .arg(&remote_dir)
        .arg("--")
        .args(train_args(work.path()))
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = wait_line(&mut err_lines, "the tunnel URL", |l| {
        l.starts_with("watch run").then(|| url_in(l)).flatten()
    });
    std::thread::spawn(move || for _ in err_lines {});

    // The host's monitor wants the token that only this side knows.
    let (code, _) = get(&format!("{}/api/health", base.base));
    assert_eq!(code, 401, "the host-side monitor has a token");
    // The page and its websocket, through the tunnel, unchanged.
    let (code, page) = get(&base.url("/"));
    assert_eq!(code, 200);
    assert!(page.contains("mnist-monitor"));
    let mut ws = ws_connect(&base.base, &base.path("/ws/runs/current?since=0"));
    let mut seqs = Vec::new();
    let mut batches = 0;
    while let Some(m) = next_message(&mut ws) {
        if let Some(seq) = m["seq"].as_u64() {
            seqs.push(seq);
        }
        if m["type"] == "batch" {
            batches += 1;
        }
        if m["type"] == "run_finished" {
            assert_eq!(m["status"], "completed");
            break;
        }
    }
    assert!(
        batches >= 100,
        "saw {batches} batch events through the tunnel"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps"
    );
    // The remote monitor exits after its run, but closes the socket
    // properly first, and the tunnel carries that close to us.
    assert_eq!(close_reason(&mut ws), "server exiting");

    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "exit {status:?}");
    let summary: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["status"], "completed",
        "the remote --json summary is relayed"
    );
    // The run lives on the host, under --remote-dir.
    let run_id = summary["run_id"].as_str().unwrap();
    assert!(remote_dir
        .join("runs")
        .join(run_id)
        .join("events.jsonl")
        .is_file());
    assert!(remote_dir
        .join("remote")
        .join(format!("{run_id}.ready"))
        .is_file());
}

#[test]
fn a_detached_run_is_rewatched_and_the_watch_survives_sshd_dying() {
    let work = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start(&work.path().join("sshd"));
    let remote_dir = work.path().join("remote-home");
    let home = work.path().join("home");
    let mut args = train_args(work.path());
    // Long enough to outlive an sshd restart.
    let epochs = args.iter().position(|a| a == "--epochs").unwrap() + 1;
    args[epochs] = "40".into();
    let ssh = |c: &mut Command| {
        c.args(sshd.login())
            .arg("--remote-bin")
            .arg(env!("CARGO_BIN_EXE_mnist-monitor"))
            .arg("--remote-dir")
            .arg(&remote_dir);
    };
    let mut c = remote(&home);
    c.arg("train").arg("--detach");
    ssh(&mut c);
    let mut detached = Killed(
        c.arg("--")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut out_lines = BufReader::new(detached.0.stdout.take().unwrap()).lines();
    let run_id = wait_line(&mut out_lines, "the detached run id", |l| {
        l.strip_prefix("run ")
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    });
    // Leave: the run goes on.
    drop(detached);

    let mut c = remote(&home);
    c.arg("watch");
    ssh(&mut c);
    let mut watcher = Killed(
        c.args(["--run", &run_id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out_lines = BufReader::new(watcher.0.stdout.take().unwrap()).lines();
    let base = wait_line(&mut out_lines, "the watch URL", url_in);
    let (reconnected_tx, reconnected) = std::sync::mpsc::channel();
    let err = BufReader::new(watcher.0.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if line.starts_with("reconnected") {
                let _ = reconnected_tx.send(());
            }
        }
    });
    let (code, health) = get(&base.url("/api/health"));
    assert_eq!(code, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["current_run"],
        run_id.as_str(),
        "the tunnel reaches the detached run"
    );
    assert_eq!(health["training"], true);

    // Follow a few batches, remembering the last seq.
    let mut ws = ws_connect(&base.base, &base.path("/ws/runs/current?since=0"));
    let mut last = 0;
    while last < 20 {
        let m = next_message(&mut ws).expect("events through the tunnel");
        if let Some(seq) = m["seq"].as_u64() {
            assert_eq!(seq, last + 1);
            last = seq;
        }
    }
    drop(ws);

    // sshd dies (listener and connection handlers); the run, in its own
    // session, goes on. The watch reconnects when sshd is back.
    sshd.kill();
    std::thread::sleep(Duration::from_secs(1));
    assert!(sshd.restart(), "sshd came back on port {}", sshd.port);
    reconnected
        .recv_timeout(Duration::from_secs(60))
        .expect("remote watch reconnected");
    // The same local URL now reaches the run again; resume after `last`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ws = loop {
        match tungstenite::connect(format!(
            "{}{}",
            base.base.replace("http://", "ws://"),
            base.path(&format!("/ws/runs/current?since={last}&run={run_id}"))
        )) {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no websocket after reconnecting: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let m = next_message(&mut ws).expect("events after reconnecting");
    assert_eq!(
        m["seq"].as_u64(),
        Some(last + 1),
        "resumed exactly after the last seq: {m}"
    );

    // Stop the run through the tunnel so it doesn't outlive the test.
    let (code, _) = post(
        &base.url(&format!("/api/runs/{run_id}/stop")),
        &serde_json::json!({}),
    );
    assert_eq!(code, 202);
    drop(watcher);
}

/// Connects far enough to prove the SSH side works, then fails on purpose
/// (there is no binary at /nonexistent).
fn probe(home: &Path, host: &str, extra: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = remote(home)
        .args(["train", host, "--remote-bin", "/nonexistent/mnist-monitor"])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

#[test]
fn host_keys_unknown_accepted_hashed_and_changed() {
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&work.path().join("sshd"));
    let home = work.path().join("home");
    let key = sshd.client_key();
    let i: [&std::ffi::OsStr; 2] = ["-i".as_ref(), key.as_os_str()];

    // Unknown host: refused, with the fingerprint and what to do.
    let (code, err) = probe(&home, &sshd.host(), &i);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("is not known")
            && err.contains("SHA256:")
            && err.contains("--accept-new-host-key"),
        "{err}"
    );
    assert!(!home.join(".ssh/known_hosts").exists());

    // --accept-new-host-key records it; the connection goes through.
    let mut args = i.to_vec();
    args.push("--accept-new-host-key".as_ref());
    let (code, err) = probe(&home, &sshd.host(), &args);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("was not found on"),
        "connected and authenticated: {err}"
    );
    let recorded = std::fs::read_to_string(home.join(".ssh/known_hosts")).unwrap();
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{recorded}"
    );
    // Now known: no flag needed.
    let (_, err) = probe(&home, &sshd.host(), &i);
    assert!(err.contains("was not found on"), "{err}");

    // Hashed entries (ssh-keygen -H) are honoured.
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(home.join(".ssh/known_hosts"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let hashed = std::fs::read_to_string(home.join(".ssh/known_hosts")).unwrap();
    assert!(
        hashed.contains("|1|") && !hashed.contains("[127.0.0.1]"),
        "{hashed}"
    );
    let (_, err) = probe(&home, &sshd.host(), &i);
    assert!(err.contains("was not found on"), "{err}");

    // A changed key: refused, naming the file and line to inspect.
    let other = work.path().join("other_host_key");
    keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let parts: Vec<&str> = other_pub.split_whitespace().collect();
    let kh = home.join(".ssh/known_hosts");
    std::fs::write(
        &kh,
        format!(
            "# comment\n# another\n[127.0.0.1]:{} {} {}\n",
            sshd.port, parts[0], parts[1]
        ),
    )
    .unwrap();
    let (code, err) = probe(&home, &sshd.host(), &i);
    assert_eq!(code, Some(2));
    assert!(err.contains("HOST KEY MISMATCH"), "{err}");
    assert!(
        err.contains(&format!("{}:3", kh.display())),
        "names the line: {err}"
    );

    // Known under another key type (an ECDSA key is recorded; the host now
    // offers only Ed25519): a changed identity, as OpenSSH sees it, even
    // with --accept-new-host-key, and nothing is recorded.
    let ecdsa = work.path().join("ecdsa_host_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&ecdsa)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ecdsa_pub = std::fs::read_to_string(ecdsa.with_extension("pub")).unwrap();
    let parts: Vec<&str> = ecdsa_pub.split_whitespace().collect();
    let known = format!("[127.0.0.1]:{} {} {}\n", sshd.port, parts[0], parts[1]);
    std::fs::write(&kh, &known).unwrap();
    let mut args = i.to_vec();
    args.push("--accept-new-host-key".as_ref());
    let (code, err) = probe(&home, &sshd.host(), &args);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("HOST KEY MISMATCH") && err.contains("ecdsa"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        known,
        "the other type's key was not recorded beside it"
    );
}

#[test]
fn keys_aliases_and_refusals() {
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&work.path().join("sshd"));
    let home = work.path().join("home");
    let kh = sshd.known_hosts();

    // A wrong key: refused with a clear message that says what was tried.
    let wrong = work.path().join("wrong_key");
    keygen(&wrong);
    let (code, err) = probe(
        &home,
        &sshd.host(),
        &[
            "-i".as_ref(),
            wrong.as_os_str(),
            "--known-hosts".as_ref(),
            kh.as_os_str(),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("refused every key") && err.contains("wrong_key (not accepted)"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "no secret in messages");

    // An alias from ~/.ssh/config: HostName, Port, User and IdentityFile.
    sshd.write_alias(&home, "gpubox");
    let (code, err) = probe(&home, "gpubox", &["--known-hosts".as_ref(), kh.as_os_str()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("was not found on gpubox"),
        "connected through the alias: {err}"
    );
    assert!(err.contains("--upload"), "says how to install: {err}");
}

#[test]
fn ctrl_c_stops_an_attached_run_and_upload_installs_the_binary() {
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&work.path().join("sshd"));
    let remote_dir = work.path().join("remote-home");
    let mut args = train_args(work.path());
    let epochs = args.iter().position(|a| a == "--epochs").unwrap() + 1;
    args[epochs] = "40".into();
    let mut child = Killed(
        remote(&work.path().join("home"))
            .arg("train")
            .args(sshd.login())
            // Not there: --upload copies this (same-architecture) binary over.
            .arg("--remote-bin")
            .arg(remote_dir.join("missing/mnist-monitor"))
            .arg("--upload")
            .arg("--remote-dir")
            .arg(&remote_dir)
            .arg("--")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err_lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let (run_id, base) = wait_line(&mut err_lines, "the tunnel URL", |l| {
        let id = l
            .strip_prefix("watch run ")?
            .split_whitespace()
            .next()?
            .to_string();
        Some((id, url_in(l)?))
    });
    std::thread::spawn(move || for _ in err_lines {});
    let installed = remote_dir.join("bin/mnist-monitor");
    assert!(
        std::fs::metadata(&installed).is_ok_and(|m| m.len() > 1_000_000),
        "uploaded to {}",
        installed.display()
    );
    // Let it train a little, then Ctrl-C (SIGINT) the local command.
    let mut ws = ws_connect(&base.base, &base.path("/ws/runs/current?since=0"));
    while next_message(&mut ws).is_some_and(|m| m["type"] != "batch") {}
    unsafe { libc_kill(child.0.id() as i32, 2) };
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "the remote run's exit code (stopped) is ours"
    );
    let events = read_events(&remote_dir.join("runs").join(&run_id).join("events.jsonl"));
    match &events.last().unwrap().kind {
        mnist_events::EventKind::RunFinished(f) => {
            assert_eq!(f.status, mnist_events::RunStatus::Stopped)
        }
        other => panic!("last event {other:?}"),
    }
}

#[test]
fn the_fleet_view_shows_an_up_host_and_a_down_one() {
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&work.path().join("sshd"));
    let home = work.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(sshd.known_hosts(), home.join(".ssh/known_hosts")).unwrap();
    sshd.write_alias(&home, "gpubox");
    // Nothing listens on port 1: that host is down.
    let mut command = bin();
    command.env("HOME", &home).env_remove("SSH_AUTH_SOCK");
    let runs = work.path().join("runs");
    let server = spawn_server_with(
        command,
        [
            "--hosts".as_ref(),
            "gpubox,127.0.0.1:1".as_ref(),
            "--fleet-interval".as_ref(),
            "1".as_ref(),
            "--fleet-remote-bin".as_ref(),
            env!("CARGO_BIN_EXE_mnist-monitor").as_ref(),
            "--run-dir".as_ref(),
            runs.as_os_str(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let hosts = loop {
        let (code, body) = get(&format!("{}/api/fleet", server.base));
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        let hosts = v["hosts"].as_array().unwrap().clone();
        if hosts[0]["state"] == "up" && hosts[1]["state"] == "down" {
            break hosts;
        }
        assert!(Instant::now() < deadline, "fleet never settled: {hosts:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let stats = &hosts[0]["stats"];
    assert_eq!(
        stats["cpu"]["cores"],
        std::thread::available_parallelism().unwrap().get()
    );
    let gpus = stats["gpus"].as_array().unwrap();
    assert!(
        !gpus.is_empty()
            || stats["gpu_error"]
                .as_str()
                .unwrap()
                .starts_with("no NVIDIA GPU"),
        "{stats}"
    );
    assert!(
        hosts[1]["error"].as_str().unwrap().contains("cannot reach"),
        "{:?}",
        hosts[1]
    );
    let (_, health) = get(&format!("{}/api/health", server.base));
    assert!(health.contains(r#""fleet":true"#), "{health}");
}

#[test]
fn ssh_agent_keys_are_used_first() {
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&work.path().join("sshd"));
    let sock = work.path().join("agent.sock");
    let agent = Killed(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("ssh-add")
        .arg(sshd.client_key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // No -i and no key files in HOME: only the agent can authenticate.
    let kh = sshd.known_hosts();
    let out = remote(&work.path().join("home"))
        .env("SSH_AUTH_SOCK", &sock)
        .args([
            "train",
            &sshd.host(),
            "--remote-bin",
            "/nonexistent/mnist-monitor",
            "--known-hosts",
        ])
        .arg(&kh)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("was not found on"),
        "authenticated through the agent: {}",
        stderr(&out)
    );
    drop(agent);
}
