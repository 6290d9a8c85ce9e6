//! `mnist-monitor remote train|watch`: a run on another machine, watched here
//! through an SSH tunnel. The files a run keeps on its host and how its
//! readiness is learnt are `mnist_remote::run`'s; this module drives them.

use crate::cli::{RemoteTrainArgs, RemoteWatchArgs, SshArgs};
use anyhow::{anyhow, Context};
use mnist_remote::exec::{exec, exec_capture, shell_quote, upload, write_file, Stream};
use mnist_remote::forward::{forward, OpenConnections, SessionSlot};
use mnist_remote::run::{request_stop, wait_ready, RunFiles};
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

/// A run being started on a host: where it lives there, how it is started,
/// and the local end of its tunnel.
struct RemoteRun {
    session: Arc<Session>,
    alias: String,
    host: String,
    files: RunFiles,
    run_id: String,
    /// Only this side of the tunnel knows it (see [`RemoteRun::prepare`]).
    token: String,
    /// The shell command that starts `train --serve` there.
    start: String,
    listener: TcpListener,
    local: std::net::SocketAddr,
    slot: SessionSlot,
    _slot_tx: watch::Sender<Option<Arc<Session>>>,
}

async fn train_async(
    args: RemoteTrainArgs,
    target: Target,
    opts: ConnectOptions,
) -> anyhow::Result<i32> {
    let run = RemoteRun::prepare(&args, &target, &opts).await?;
    if args.detach {
        run.detached().await
    } else {
        run.attached().await
    }
}

impl RemoteRun {
    /// Connects, finds the binary, writes the run's token to a 0600 file
    /// over the SSH channel (the host-side monitor needs a token that only
    /// this side knows: other users of a shared GPU box could otherwise stop
    /// the run), and binds the local end of the tunnel.
    async fn prepare(
        args: &RemoteTrainArgs,
        target: &Target,
        opts: &ConnectOptions,
    ) -> anyhow::Result<Self> {
        let session = Arc::new(connect(target, opts).await?);
        let dir = args.ssh.remote_dir.clone();
        let bin = remote_binary(&session, &args.ssh, args.upload, &dir).await?;
        let run_id = mnist_train::new_run_id();
        let train_args: String = args
            .train_args
            .iter()
            .map(|a| format!(" {}", shell_quote(a)))
            .collect();
        let token = mnist_server::guard::random_token()
            .context("cannot make a token for the remote monitor")?;
        let files = RunFiles::new(&dir, &run_id);
        write_file(&session, token.as_bytes(), &files.file("token"), "600").await?;
        // Paths relative to the remote directory, where the run starts.
        let start = format!(
            "{} train --serve 127.0.0.1:0 --token-file remote/{run_id}.token \
             --ready-file remote/{run_id}.ready --run-id {run_id}{train_args}",
            shell_quote(&bin),
        );
        let listener = bind_local(args.ssh.local_port).await?;
        let local = listener.local_addr()?;
        let (slot_tx, slot) = watch::channel(Some(session.clone()));
        Ok(Self {
            session,
            alias: target.alias.clone(),
            host: args.ssh.host.clone(),
            files,
            run_id,
            token,
            start,
            listener,
            local,
            slot,
            _slot_tx: slot_tx,
        })
    }

    /// Starts the run with `nohup`, opens the tunnel once it serves, and
    /// follows its log until Ctrl-C; the run goes on without us.
    async fn detached(self) -> anyhow::Result<i32> {
        let (qdir, run_id) = (&shell_quote(self.files.dir()), &self.run_id);
        let command = format!(
            "mkdir -p {qdir}/remote && cd {qdir} && (nohup {} > remote/{run_id}.log 2>&1 < /dev/null & echo $! > remote/{run_id}.pid)",
            self.start
        );
        let out = exec_capture(&self.session, &command).await?;
        if !out.success() {
            anyhow::bail!(
                "starting the run on {} failed: {}",
                self.alias,
                out.stderr.trim()
            );
        }
        let port = wait_ready(&self.session, &self.files, true, READY_TIMEOUT)
            .await
            .with_context(|| format!("starting the run on {}", self.alias))?
            .port;
        println!(
            "run {run_id} is training on {} (detached); watch it at http://{}/?token={}",
            self.alias, self.local, self.token
        );
        println!(
            "reattach later with: mnist-monitor remote watch {} --run {run_id}",
            self.host
        );
        let _ = std::io::stdout().flush();
        let follow = format!("tail -n +1 -f {qdir}/remote/{run_id}.log");
        let session = self.session.clone();
        spawn_tunnel(self.listener, self.slot, port);
        tokio::select! {
            _ = exec(&session, &follow, |_, b| { let _ = std::io::stderr().write_all(b); }) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("\ntunnel closed; run {run_id} goes on on {}", self.alias);
        Ok(0)
    }

    /// Runs the command in the foreground, streaming its output here; opens
    /// the tunnel once it serves; Ctrl-C stops the run after its batch (a
    /// second one leaves). The exit code is the remote run's.
    async fn attached(self) -> anyhow::Result<i32> {
        let command = format!(
            "mkdir -p {q}/remote && cd {q} && exec {}",
            self.start,
            q = shell_quote(self.files.dir())
        );
        let running = tokio::spawn(stream_output(self.session.clone(), command));
        tokio::pin!(running);
        let ready = {
            let (session, files) = (self.session.clone(), self.files.clone());
            tokio::spawn(async move { wait_ready(&session, &files, false, READY_TIMEOUT).await })
        };
        tokio::pin!(ready);
        let mut listener = Some(self.listener);
        let mut tunnel: Option<Arc<OpenConnections>> = None;
        let mut port = None;
        let mut stopping = false;
        let (run_id, local) = (&self.run_id, self.local);
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
                found = &mut ready, if port.is_none() => {
                    let p = found??.port;
                    port = Some(p);
                    eprintln!("watch run {run_id} at http://{local}/?token={} (tunnel to {}:127.0.0.1:{p})", self.token, self.alias);
                    if let Some(listener) = listener.take() {
                        tunnel = Some(spawn_tunnel(listener, self.slot.clone(), p));
                    }
                }
                _ = tokio::signal::ctrl_c() => {
                    if stopping || port.is_none() {
                        eprintln!("{}; the remote run may go on", if stopping { "second Ctrl-C: leaving" } else { "not serving yet: leaving" });
                        return Ok(130);
                    }
                    stopping = true;
                    eprintln!("stopping run {run_id} on {} after its current batch (Ctrl-C again to leave now)", self.alias);
                    if let Err(e) = request_stop(local, run_id, &self.token).await {
                        eprintln!("could not ask the run to stop: {e}");
                    }
                }
            }
        }
    }
}

/// How long a run may take to start its monitor (data loading, a first
/// download of MNIST on the host).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `command` on the host, copying its stdout and stderr here.
async fn stream_output(session: Arc<Session>, command: String) -> Result<Option<u32>, SshError> {
    exec(&session, &command, move |stream, bytes| match stream {
        Stream::Stdout => {
            let _ = std::io::stdout().write_all(bytes);
            let _ = std::io::stdout().flush();
        }
        Stream::Stderr => {
            let _ = std::io::stderr().write_all(bytes);
        }
    })
    .await
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
    let (port, token) = match args.port {
        Some(p) => (p, None),
        None => {
            watched_run(
                &session,
                &args.ssh.remote_dir,
                args.run.as_deref(),
                &target.alias,
            )
            .await?
        }
    };
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

/// The port and token of the run to watch: `run`, or the newest one.
async fn watched_run(
    session: &Session,
    dir: &str,
    run: Option<&str>,
    alias: &str,
) -> anyhow::Result<(u16, Option<String>)> {
    let start_one = "start one with `mnist-monitor remote train`";
    let id = match run {
        Some(id) => id.to_string(),
        None => mnist_remote::run::newest_run(session, dir)
            .await?
            .ok_or_else(|| {
                anyhow!("no run to watch on {alias} (nothing in {dir}/remote/); {start_one}")
            })?,
    };
    let files = RunFiles::new(dir, &id);
    let ready = mnist_remote::run::read_ready(session, &files)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "no run {id} on {alias} (no {}); {start_one}",
                files.file("ready")
            )
        })?;
    // The run's token sits beside its ready file (private to its owner).
    let token = exec_capture(session, &format!("cat {}", files.quoted("token")))
        .await
        .ok()
        .filter(|o| o.success())
        .map(|o| o.stdout.trim().to_string())
        .filter(|t| !t.is_empty());
    Ok((ready.port, token))
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
