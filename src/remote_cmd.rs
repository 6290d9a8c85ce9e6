//! `mnist-monitor remote train|watch`: a run on another machine, watched here
//! through an SSH tunnel.
//!
//! On the host, runs live under `--remote-dir` (default `~/mnist-monitor`):
//! `runs/`, `checkpoints/`, `datasets/`, and `remote/<run-id>.{log,pid,port}`
//! which `remote watch` reads to find a run's monitor port.

use crate::cli::{RemoteTrainArgs, RemoteWatchArgs, SshArgs};
use anyhow::{anyhow, Context};
use mnist_remote::exec::{exec, exec_capture, shell_quote, upload, write_file, Stream};
use mnist_remote::forward::{forward, OpenConnections, SessionSlot};
use mnist_remote::{connect, ConnectOptions, Session, SshError, Target};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn target_and_options(ssh: &SshArgs) -> anyhow::Result<(Target, ConnectOptions)> {
    let home = mnist_remote::target::home();
    let config = ssh
        .ssh_config
        .clone()
        .unwrap_or_else(|| home.join(".ssh").join("config"));
    let target = Target::resolve(&ssh.host, Some(&config)).map_err(|e| anyhow!("HOST {e}"))?;
    let mut opts = ConnectOptions {
        accept_new_host_key: ssh.accept_new_host_key,
        identities: ssh.identity.clone(),
        ..Default::default()
    };
    if let Some(k) = &ssh.known_hosts {
        opts.known_hosts = k.clone();
    }
    Ok((target, opts))
}

async fn bind_local(port: u16) -> anyhow::Result<TcpListener> {
    // Loopback only: the tunnel is for this machine's browser.
    TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("--local-port {port}: cannot listen on 127.0.0.1:{port}"))
}

/// The remote monitor's port, from its "serving on http://127.0.0.1:PORT/" line.
fn parse_serving(line: &str) -> Option<u16> {
    let rest = line.split("serving on http://").nth(1)?;
    let hostport = rest.split('/').next()?;
    hostport.rsplit(':').next()?.trim().parse().ok()
}

pub fn train(args: RemoteTrainArgs) -> anyhow::Result<ExitCode> {
    let ssh = args.ssh.clone();
    run_remote(&ssh, |target, opts| train_async(args, target, opts))
}

/// Resolves the host and runs `command` on a runtime; its `i32` is the
/// exit code (the remote run's, for `remote train`).
fn run_remote<F, Fut>(ssh: &SshArgs, command: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Target, ConnectOptions) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    let (target, opts) = target_and_options(ssh)?;
    let code = runtime().block_on(command(target, opts))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Finds (or, with `--upload`, installs) the remote binary.
async fn remote_binary(
    session: &Session,
    ssh: &SshArgs,
    upload_ok: bool,
    dir: &str,
) -> anyhow::Result<String> {
    let bin = shell_quote(&ssh.remote_bin);
    let found = exec_capture(
        session,
        &format!("if [ -x {bin} ]; then echo {bin}; else command -v {bin}; fi"),
    )
    .await?;
    if found.success() && !found.stdout.trim().is_empty() {
        return Ok(found.stdout.trim().to_string());
    }
    if !upload_ok {
        anyhow::bail!(
            "{} was not found on {} (looked for {:?} as a path and on PATH). Install it there \
             (`cargo install --path .` in a checkout, or copy target/release/mnist-monitor), point \
             --remote-bin at it, or pass --upload to copy this binary over SSH",
            ssh.remote_bin,
            ssh.host,
            ssh.remote_bin
        );
    }
    let uname = exec_capture(session, "uname -s -m").await?;
    let remote = uname.stdout.trim().to_string();
    let local = format!(
        "{} {}",
        if cfg!(target_os = "linux") {
            "Linux"
        } else {
            std::env::consts::OS
        },
        std::env::consts::ARCH
    );
    if remote != local {
        anyhow::bail!(
            "--upload: {} is {remote:?} but this binary is built for {local:?}; build mnist-monitor on the host instead",
            ssh.host
        );
    }
    let exe = std::env::current_exe().context("--upload: cannot find this binary")?;
    let dest = format!("{dir}/bin/mnist-monitor");
    eprintln!("uploading {} to {}:{dest} …", exe.display(), ssh.host);
    upload(session, &exe, &dest).await?;
    Ok(dest)
}

async fn train_async(
    args: RemoteTrainArgs,
    target: Target,
    opts: ConnectOptions,
) -> anyhow::Result<i32> {
    let session = Arc::new(connect(&target, &opts).await?);
    let dir = args.ssh.remote_dir.clone();
    let qdir = shell_quote(&dir);
    let bin = remote_binary(&session, &args.ssh, args.upload, &dir).await?;
    let run_id = mnist_train::new_run_id();
    let train_args: String = args
        .train_args
        .iter()
        .map(|a| format!(" {}", shell_quote(a)))
        .collect();
    // The host's monitor needs a token that only this side of the tunnel
    // knows: other users of a shared GPU box could otherwise stop the run.
    let token = mnist_server::guard::random_token()
        .context("cannot make a token for the remote monitor")?;
    let token_file = format!("{dir}/remote/{run_id}.token");
    write_file(&session, token.as_bytes(), &token_file, "600").await?;
    let start = format!(
        "{} train --serve 127.0.0.1:0 --token-file {} --run-id {run_id}{train_args}",
        shell_quote(&bin),
        shell_quote(&token_file)
    );
    let listener = bind_local(args.ssh.local_port).await?;
    let local = listener.local_addr()?;
    let (slot_tx, slot) = watch::channel(Some(session.clone()));
    let _keep = slot_tx;

    if args.detach {
        let command = format!(
            "mkdir -p {qdir}/remote && cd {qdir} && (nohup {start} > remote/{run_id}.log 2>&1 < /dev/null & echo $! > remote/{run_id}.pid)"
        );
        let out = exec_capture(&session, &command).await?;
        if !out.success() {
            anyhow::bail!(
                "starting the run on {} failed: {}",
                target.alias,
                out.stderr.trim()
            );
        }
        // Wait for the monitor's port in the log.
        let port = {
            let mut port = None;
            for _ in 0..600 {
                let log =
                    exec_capture(&session, &format!("cat {qdir}/remote/{run_id}.log")).await?;
                if let Some(p) = log.stdout.lines().find_map(parse_serving) {
                    port = Some(p);
                    break;
                }
                let alive = exec_capture(
                    &session,
                    &format!("kill -0 $(cat {qdir}/remote/{run_id}.pid)"),
                )
                .await?;
                if !alive.success() {
                    anyhow::bail!(
                        "the run on {} exited before serving:\n{}",
                        target.alias,
                        log.stdout.trim()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            port.ok_or_else(|| {
                anyhow!(
                    "the run on {} did not start its monitor within 2 minutes",
                    target.alias
                )
            })?
        };
        exec_capture(
            &session,
            &format!("echo {port} > {qdir}/remote/{run_id}.port"),
        )
        .await?;
        spawn_tunnel(listener, slot, port);
        println!(
            "run {run_id} is training on {} (detached); watch it at http://{local}/?token={token}",
            target.alias
        );
        println!(
            "reattach later with: mnist-monitor remote watch {} --run {run_id}",
            args.ssh.host
        );
        let _ = std::io::stdout().flush();
        // Follow its log until Ctrl-C; the run goes on without us.
        let log_session = session.clone();
        let follow = format!("tail -n +1 -f {qdir}/remote/{run_id}.log");
        tokio::select! {
            _ = exec(&log_session, &follow, |_, b| { let _ = std::io::stderr().write_all(b); }) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("\ntunnel closed; run {run_id} goes on on {}", target.alias);
        return Ok(0);
    }

    // Attached: stream the remote output; open the tunnel once it serves.
    let mut listener = Some(listener);
    let mut tunnel: Option<Arc<OpenConnections>> = None;
    let command = format!("mkdir -p {qdir}/remote && cd {qdir} && exec {start}");
    let (port_tx, mut port_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
    let run_session = session.clone();
    let mut line_buf = String::new();
    let running = tokio::spawn(async move {
        exec(&run_session, &command, move |stream, bytes| match stream {
            Stream::Stdout => {
                let _ = std::io::stdout().write_all(bytes);
                let _ = std::io::stdout().flush();
            }
            Stream::Stderr => {
                let _ = std::io::stderr().write_all(bytes);
                line_buf.push_str(&String::from_utf8_lossy(bytes));
                while let Some(i) = line_buf.find('\n') {
                    let line: String = line_buf.drain(..=i).collect();
                    if let Some(p) = parse_serving(&line) {
                        let _ = port_tx.send(p);
                    }
                }
            }
        })
        .await
    });
    tokio::pin!(running);
    let mut port = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            status = &mut running => {
                let status = status??;
                // The remote monitor closed its viewers as it exited; let
                // those last bytes through the tunnel before we go.
                if let Some(open) = &tunnel {
                    open.drained(Duration::from_secs(5)).await;
                }
                return Ok(match status { Some(code) => code as i32, None => 1 });
            }
            Some(p) = port_rx.recv(), if port.is_none() => {
                port = Some(p);
                let _ = exec_capture(&session, &format!("echo {p} > {qdir}/remote/{run_id}.port")).await;
                eprintln!("watch run {run_id} at http://{local}/?token={token} (tunnel to {}:127.0.0.1:{p})", target.alias);
                if let Some(listener) = listener.take() {
                    tunnel = Some(spawn_tunnel(listener, slot.clone(), p));
                }
            }
            _ = tokio::signal::ctrl_c() => {
                if stopping {
                    eprintln!("second Ctrl-C: leaving; the remote run may go on");
                    return Ok(130);
                }
                stopping = true;
                match port {
                    Some(_) => {
                        eprintln!("stopping run {run_id} on {} after its current batch (Ctrl-C again to leave now)", target.alias);
                        if let Err(e) = stop_over_tunnel(local, &run_id, &token).await {
                            eprintln!("could not ask the run to stop: {e}");
                        }
                    }
                    None => {
                        eprintln!("not started yet; leaving");
                        return Ok(130);
                    }
                }
            }
        }
    }
}

/// `POST /api/runs/{id}/stop` through the tunnel.
async fn stop_over_tunnel(
    local: std::net::SocketAddr,
    run_id: &str,
    token: &str,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(local).await?;
    let req = format!("POST /api/runs/{run_id}/stop HTTP/1.1\r\nhost: {local}\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp);
    if text.starts_with("HTTP/1.1 202") {
        Ok(())
    } else {
        Err(anyhow!("{}", text.lines().next().unwrap_or("no answer")))
    }
}

pub fn watch(args: RemoteWatchArgs) -> anyhow::Result<ExitCode> {
    let ssh = args.ssh.clone();
    run_remote(&ssh, |target, opts| watch_async(args, target, opts))
}

async fn watch_async(
    args: RemoteWatchArgs,
    target: Target,
    opts: ConnectOptions,
) -> anyhow::Result<i32> {
    let session = Arc::new(connect(&target, &opts).await?);
    let qdir = shell_quote(&args.ssh.remote_dir);
    let port_file = match &args.run {
        Some(id) => format!("{qdir}/remote/{}.port", shell_quote(id)),
        None => format!("$(ls -t {qdir}/remote/*.port 2>/dev/null | head -n 1)"),
    };
    let port = match (args.port, &args.run) {
        (Some(p), _) => p,
        (None, run) => {
            let out = exec_capture(&session, &format!("cat {port_file}")).await?;
            out.stdout.trim().parse().map_err(|_| match run {
                Some(id) => anyhow!("no run {id} on {} (no {}/remote/{id}.port); start one with `mnist-monitor remote train`", target.alias, args.ssh.remote_dir),
                None => anyhow!("no run to watch on {} (nothing in {}/remote/); start one with `mnist-monitor remote train`", target.alias, args.ssh.remote_dir),
            })?
        }
    };
    // The run's token sits beside its port file (private to its owner).
    let token_known = args.port.is_none() || args.run.is_some();
    let token = exec_capture(
        &session,
        &format!("f={port_file}; cat \"${{f%.port}}.token\""),
    )
    .await
    .ok()
    .filter(|o| token_known && o.success())
    .map(|o| o.stdout.trim().to_string())
    .filter(|t| !t.is_empty());
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let listener = bind_local(args.ssh.local_port).await?;
    let local = listener.local_addr()?;
    let (slot_tx, slot) = watch::channel(Some(session));
    spawn_tunnel(listener, slot, port);
    println!(
        "watching {}:127.0.0.1:{port} at http://{local}/{query}",
        target.alias
    );
    let _ = std::io::stdout().flush();

    // Keep the tunnel's session alive: when it drops, reconnect with backoff;
    // the local URL stays the same and the page resumes from its last seq.
    let supervise = async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let closed = slot_tx.borrow().as_ref().is_none_or(|s| s.is_closed());
            if !closed {
                continue;
            }
            slot_tx.send_replace(None);
            eprintln!("connection to {} lost; reconnecting…", target.alias);
            loop {
                match connect(&target, &opts).await {
                    Ok(s) => {
                        slot_tx.send_replace(Some(Arc::new(s)));
                        eprintln!("reconnected to {}", target.alias);
                        backoff = Duration::from_millis(500);
                        break;
                    }
                    Err(e) if !e.is_transient() => {
                        return Err::<(), SshError>(e);
                    }
                    Err(e) => {
                        tracing::debug!("reconnect: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
    };
    tokio::select! {
        r = supervise => Err(match r { Err(e) => anyhow::Error::new(e), Ok(()) => anyhow!("the tunnel supervisor ended") }),
        _ = tokio::signal::ctrl_c() => Ok(0),
    }
}

/// Forwards `listener` to the remote monitor on `127.0.0.1:port` (as the
/// host sees it), in the background; returns the tunnel's open connections.
fn spawn_tunnel(
    listener: tokio::net::TcpListener,
    slot: SessionSlot,
    port: u16,
) -> Arc<OpenConnections> {
    let open = Arc::new(OpenConnections::default());
    tokio::spawn(forward(
        listener,
        slot,
        "127.0.0.1".into(),
        port,
        open.clone(),
    ));
    open
}
