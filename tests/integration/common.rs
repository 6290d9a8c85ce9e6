//! Helpers shared by the integration tests.

use mnist_data::{IdxImages, IdxLabels, FILES};
use mnist_events::Event;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mnist-monitor"))
}

/// The real MNIST files, which `.ci/run` copies into `datasets/mnist`.
pub fn real_mnist_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist");
    assert!(
        mnist_data::missing_files(&dir).is_empty(),
        "real MNIST is needed in {}: copy ../shared/datasets/mnist/*.gz there (as .ci/run does)",
        dir.display()
    );
    dir
}

/// A synthetic, learnable data set in IDX format: class k is a bright 6×6
/// block at a class-specific place plus deterministic noise.
pub fn write_synthetic(dir: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let make = |n: usize, salt: usize| {
        let mut pixels = vec![0u8; n * 784];
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let k = (i * 7 + salt) % 10;
            labels.push(k as u8);
            let (r0, c0) = (2 + (k / 5) * 12, 2 + (k % 5) * 5);
            for r in r0..r0 + 6 {
                for c in c0..c0 + 4 {
                    pixels[i * 784 + r * 28 + c] = 255;
                }
            }
            for p in 0..784 {
                let noise = ((i * 31 + p * 17 + salt) % 97) as u8;
                pixels[i * 784 + p] = pixels[i * 784 + p].saturating_add(noise / 2);
            }
        }
        (
            IdxImages {
                count: n,
                rows: 28,
                cols: 28,
                pixels,
            }
            .encode(),
            IdxLabels { labels }.encode(),
        )
    };
    let (ti, tl) = make(train, 0);
    let (si, sl) = make(test, 3);
    std::fs::write(dir.join(FILES[0].name), ti).unwrap();
    std::fs::write(dir.join(FILES[1].name), tl).unwrap();
    std::fs::write(dir.join(FILES[2].name), si).unwrap();
    std::fs::write(dir.join(FILES[3].name), sl).unwrap();
}

/// `--run-dir WORK/runs --checkpoint-dir WORK/ckpt`: a test's own run and
/// checkpoint directories.
pub fn work_dirs(work: &Path) -> [std::ffi::OsString; 4] {
    [
        "--run-dir".into(),
        work.join("runs").into(),
        "--checkpoint-dir".into(),
        work.join("ckpt").into(),
    ]
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn read_events(path: &Path) -> Vec<Event> {
    mnist_events::read_events(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses the single JSON summary `train --json` prints on stdout.
pub fn summary(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {text}\nstderr: {}",
            stderr(out)
        )
    })
}

/// A `mnist-monitor serve` process on a free loopback port, killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --bind 127.0.0.1:0` with `args` and waits for the line
/// that names its address.
pub fn spawn_server<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Server {
    spawn_server_with(bin(), args)
}

/// `--data-dir DATA` plus [`work_dirs`]: a server on a test's own data, runs
/// and checkpoints.
pub fn serve_in(data: &Path, work: &Path) -> Vec<std::ffi::OsString> {
    let mut args = vec!["--data-dir".into(), data.into()];
    args.extend(work_dirs(work));
    args
}

/// [`spawn_server`] from a prepared command (extra environment, …).
pub fn spawn_server_with<S: AsRef<std::ffi::OsStr>>(
    mut command: Command,
    args: impl IntoIterator<Item = S>,
) -> Server {
    let mut child = command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().expect("serve prints its address").unwrap();
    let url = line
        .split("serving on ")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    let base = url.trim().trim_end_matches('/').to_string();
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

// ---------- HTTP and websocket clients for the server tests ----------

pub fn get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

pub fn post(url: &str, body: &Value) -> (u16, Value) {
    let result = ureq::post(url)
        .set("content-type", "application/json")
        .send_string(&body.to_string());
    let (code, text) = match result {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    };
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

pub fn ws_connect(base: &str, path: &str) -> Ws {
    let url = format!("{}{path}", base.replace("http://", "ws://"));
    let (ws, _) = tungstenite::connect(url).unwrap();
    ws
}

/// Next JSON message, or None when the server closed the socket.
/// `runs_changed` (the runs folder changed, a hint to list the runs again)
/// can come between any two messages and is skipped.
pub fn next_message(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "runs_changed" {
                    return Some(v);
                }
            }
            Ok(tungstenite::Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return None
            }
            Err(e) => panic!("websocket: {e}"),
        }
    }
}

/// Reads the socket to its end and returns the reason in the server's close
/// frame; panics when the connection ends without a closing handshake (the
/// viewer was cut off, and may have missed events).
pub fn close_reason(ws: &mut Ws) -> String {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                return frame.map(|f| f.reason.to_string()).unwrap_or_default()
            }
            Ok(_) => continue,
            Err(e) => panic!("the socket ended without a close frame: {e}"),
        }
    }
}

pub fn wait_finished(base: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = get(&format!("{base}/api/runs/{run_id}"));
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["status"] != "running" && v["status"] != "paused" {
            return v;
        }
        assert!(Instant::now() < deadline, "run {run_id} did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `GET /api/runs/{id}` until the run (queued, then training) ends.
pub fn wait_ended(base: &str, run_id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let (_, body) = get(&format!("{base}/api/runs/{run_id}"));
        let v: Value = serde_json::from_str(&body).unwrap();
        if ["completed", "failed", "stopped"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {run_id} did not end: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs a `tests/e2e/*.mjs` browser script (playwright-core driving
/// Debian's Chromium) with `args`; panics with its output if it fails.
pub fn run_e2e<S: AsRef<std::ffi::OsStr>>(
    script: &str,
    args: impl IntoIterator<Item = S>,
) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("web/node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix web` (as .ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let out = Command::new("node")
        .arg(root.join("tests/e2e").join(script))
        .args(args)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is needed for the browser tests");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A loopback port free now (for a peer the test starts: Prometheus, Slurm).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
