//! Safe by default: what another web site, a hostile upload or a clumsy
//! user could do to a running monitor, each tried against the real binary.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A server on synthetic data in a temporary directory.
fn server_in(work: &std::path::Path) -> Server {
    let data = work.join("data");
    write_synthetic(&data, 100, 20);
    let mut args = serve_in(&data, work);
    args.push("--skip-verify".into());
    spawn_server(args)
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

/// Status of a raw HTTP/1.1 request (headers exactly as given, which ureq
/// would not allow for Host).
fn raw_status(base: &str, request: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (code, text)
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r += &format!("{k}: {v}\r\n");
    }
    r + "\r\n" + body
}

/// `POST /api/runs/<another run>/stop` once took the state lock twice and
/// froze the server for good; any web page could send it.
#[test]
fn stopping_a_run_that_is_not_current_answers_and_the_server_lives_on() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 100, 20);
    for id in ["20260101-000000-aaaa", "20260102-000000-bbbb"] {
        let dir = work.path().join("runs").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("events.jsonl"), "").unwrap();
    }
    // `serve` shows the newest logged run, so the older one is "another run".
    let server = spawn_server(serve_in(&data, work.path()));
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(10))
        .build();
    let url = format!("{}/api/runs/20260101-000000-aaaa/stop", server.base);
    let code = match agent.post(&url).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("the stop request got no answer: {e}"),
    };
    assert_eq!(code, 409);
    for _ in 0..3 {
        let health = agent
            .get(&format!("{}/api/health", server.base))
            .call()
            .expect("the server still answers");
        assert_eq!(health.status(), 200);
    }
}

/// DNS rebinding: a page on evil.example whose name now points at 127.0.0.1
/// sends `Host: evil.example`. Such requests get 403 and change nothing.
#[test]
fn a_rebound_host_name_is_refused_and_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let server = server_in(work.path());
    let body = r#"{"kernels":[4,4,4,4],"epochs":1,"backend":"cpu"}"#;
    for (method, path, body) in [
        ("GET", "/api/runs", ""),
        ("GET", "/api/health", ""),
        ("POST", "/api/runs", body),
        ("GET", "/", ""),
    ] {
        let (code, text) = raw_status(
            &server.base,
            &request(
                method,
                path,
                &[
                    ("host", "evil.example:8080"),
                    ("content-type", "application/json"),
                ],
                body,
            ),
        );
        assert_eq!(code, 403, "{method} {path}: {text}");
        assert!(text.contains("loopback"), "{text}");
    }
    assert!(!work.path().join("runs").exists(), "no run was started");
    // The same requests by the loopback names pass.
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let port = server.base.rsplit(':').next().unwrap();
        let (code, text) = raw_status(
            &server.base,
            &request(
                "GET",
                "/api/health",
                &[("host", &format!("{host}:{port}"))],
                "",
            ),
        );
        assert_eq!(code, 200, "{host}: {text}");
    }
}

/// Another site (or another port of this host) may not drive the server
/// nor read its websockets; the page's own origin may.
#[test]
fn other_origins_cannot_post_or_open_websockets() {
    let work = tempfile::tempdir().unwrap();
    let server = server_in(work.path());
    let host = server.base.trim_start_matches("http://").to_string();
    let port = host.rsplit(':').next().unwrap().to_string();
    let foreign = [
        "https://evil.example".to_string(),
        format!("http://localhost:{}", port.parse::<u16>().unwrap() ^ 1),
        "null".to_string(),
    ];
    for origin in &foreign {
        for path in [
            "/api/runs/x/stop",
            "/api/runs/x/control",
            "/api/runs/x/resume",
            "/api/runs/x/fork",
            "/api/overrides",
            "/api/runs",
        ] {
            let (code, text) = raw_status(
                &server.base,
                &request(
                    "POST",
                    path,
                    &[
                        ("host", &host),
                        ("origin", origin),
                        ("content-type", "application/json"),
                    ],
                    "{}",
                ),
            );
            assert_eq!(code, 403, "POST {path} from {origin}: {text}");
        }
        let url = format!("ws://{host}/ws/runs/current");
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        match tungstenite::connect(req) {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403, "{origin}"),
            other => panic!(
                "a websocket from {origin} was not refused: {:?}",
                other.map(|_| ())
            ),
        }
    }
    // Its own origin passes (a 404 for a run that does not exist, not 403).
    let (code, text) = raw_status(
        &server.base,
        &request(
            "POST",
            "/api/runs/nope/stop",
            &[("host", &host), ("origin", &format!("http://{host}"))],
            "",
        ),
    );
    assert_eq!(code, 404, "{text}");
    let url = format!("ws://{host}/ws/runs/current");
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut()
        .insert("origin", format!("http://{host}").parse().unwrap());
    let (mut ws, _) = tungstenite::connect(req).expect("the page's own origin opens a websocket");
    assert_eq!(next_message(&mut ws).unwrap()["type"], "idle", "no run yet");
}

#[test]
fn every_response_carries_the_security_headers() {
    let work = tempfile::tempdir().unwrap();
    let server = server_in(work.path());
    for path in ["/", "/app.js", "/api/health", "/api/runs/nope"] {
        let r = match agent().get(&format!("{}{path}", server.base)).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{path}: {e}"),
        };
        let csp = r
            .header("content-security-policy")
            .unwrap_or_default()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

/// A PNG whose header claims `side`×`side` 1-bit pixels, all black: about
/// 60 KB of zlib for a 20000×20000 image.
fn png_bomb(side: u32) -> Vec<u8> {
    use flate2::{write::ZlibEncoder, Compression, Crc};
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // 1-bit greyscale
    chunk(&mut out, b"IHDR", &ihdr);
    let row = vec![0u8; 1 + side.div_ceil(8) as usize];
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    for _ in 0..side {
        z.write_all(&row).unwrap();
    }
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A 60 KB PNG that claims 400 megapixels once took 16 s and 2.8 GB to
/// decode, on the server's own workers; four at once stopped it answering.
#[test]
fn a_png_decompression_bomb_is_refused_from_its_header() {
    use base64::Engine;
    let work = tempfile::tempdir().unwrap();
    let server = server_in(work.path());
    let bomb = png_bomb(20_000);
    assert!(
        bomb.len() < 64 * 1024 * 3 / 4,
        "fits the request limit: {}",
        bomb.len()
    );
    let body = serde_json::json!({
        "png_base64": base64::engine::general_purpose::STANDARD.encode(&bomb)
    });
    let bombs: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("{}/api/predict", server.base);
            let body = body.clone();
            std::thread::spawn(move || post(&url, &body))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let health = agent().get(&format!("{}/api/health", server.base)).call();
    assert!(health.is_ok(), "the server answers while bombs arrive");
    for b in bombs {
        let (code, out) = b.join().unwrap();
        assert_eq!(code, 400, "{out}");
        let message = out["errors"][0]["message"].as_str().unwrap();
        // Only the header check knows the size: a decode would have run first.
        assert!(
            message.contains("20000×20000") && message.contains("4096"),
            "{message}"
        );
    }
    // A small honest PNG still goes through the decoder (404: no model yet).
    let small = png_bomb(64);
    let (code, out) = post(
        &format!("{}/api/predict", server.base),
        &serde_json::json!({"png_base64": base64::engine::general_purpose::STANDARD.encode(&small)}),
    );
    assert_eq!(code, 404, "{out}");
}

/// In a real browser: a page on another port of this host cannot stop a
/// training run, read the API or open a websocket; a run folder named like
/// HTML shows as text on the monitor's page and runs nothing.
#[test]
fn another_site_in_chromium_cannot_stop_or_read_a_run_and_names_stay_text() {
    let work = tempfile::tempdir().unwrap();
    let evil = work
        .path()
        .join("runs")
        .join("<img src=x onerror=\"window.pwned=1\">");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(evil.join("events.jsonl"), "").unwrap();
    let server = server_in(work.path());
    let (code, body) = post(
        &format!("{}/api/runs", server.base),
        &serde_json::json!({"kernels": [4, 4, 4, 4], "batch_size": 10, "epochs": 500,
                            "backend": "cpu", "val_size": 10, "limit_test": 10}),
    );
    assert_eq!(code, 201, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();
    let status = |base: &str| {
        let (_, show) = get(&format!("{base}/api/runs/{run_id}"));
        serde_json::from_str::<serde_json::Value>(&show).unwrap()["status"].clone()
    };
    assert_eq!(status(&server.base), "running");

    let result = run_e2e("attacker.mjs", [server.base.as_str(), run_id.as_str()]);
    assert!(result.contains("\"ws\":\"refused\""), "{result}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        status(&server.base),
        "running",
        "the other site did not stop it"
    );

    let (code, _) = post(
        &format!("{}/api/runs/{run_id}/stop", server.base),
        &serde_json::json!({}),
    );
    assert_eq!(code, 202, "the user still can");
}
