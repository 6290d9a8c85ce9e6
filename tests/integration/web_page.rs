//! The page in a real headless Chromium: `tests/e2e/page.mjs` (playwright-core
//! driving Debian's chromium) fills the form, sees a field error, starts a
//! real run on real MNIST and waits for chart points, sample images and the
//! confusion matrix; it saves a screenshot to `target/e2e-page.png`.
//! `.ci/run` installs chromium and `web/node_modules`.

use crate::common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn page_starts_a_run_and_shows_it_live_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("web/node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix web` (as .ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (as .ci/run does)"
    );

    let work = tempfile::tempdir().unwrap();
    let server = spawn_server(serve_in(&real_mnist_dir(), work.path()));
    let url = format!("{}/", server.base);

    let shot = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("e2e-page.png");
    let out = Command::new("node")
        .arg(root.join("tests/e2e/page.mjs"))
        .arg(&url)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is needed for the browser test");
    drop(server);
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot was saved"
    );
}

#[test]
fn page_reconnects_by_itself_after_a_server_restart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("node")
        .arg(root.join("tests/e2e/reconnect.mjs"))
        .arg(env!("CARGO_BIN_EXE_mnist-monitor"))
        .arg(real_mnist_dir())
        .arg(work.path())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is needed for the browser test");
    assert!(
        out.status.success(),
        "browser reconnect test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
