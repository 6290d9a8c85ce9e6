//! Talking to a running server from the command line (`sweep --server`,
//! `control`): its token, a JSON POST, and its error shape read back.

use anyhow::Context;
use std::path::Path;

/// The token from `--token-file`, else `MNIST_MONITOR_TOKEN`, else none
/// (a loopback server needs none).
pub fn token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    match file {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?
                .trim()
                .to_string(),
        )),
        None => Ok(std::env::var("MNIST_MONITOR_TOKEN").ok()),
    }
}

/// POSTs `body` to `server` + `path`; the answer's JSON, or an error
/// saying what the server answered (its `error`, and each field's).
pub fn post_json(
    server: &str,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let endpoint = format!("{}{path}", server.trim_end_matches('/'));
    let mut request = ureq::post(&endpoint).set("content-type", "application/json");
    if let Some(t) = token {
        request = request.set("authorization", &format!("Bearer {t}"));
    }
    match request.send_string(&body.to_string()) {
        Ok(r) => Ok(serde_json::from_str(&r.into_string()?)?),
        Err(ureq::Error::Status(code, r)) => {
            let body: serde_json::Value =
                serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or_default();
            let fields: Vec<String> = body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f["field"].as_str().unwrap_or("?"),
                        f["message"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            let error = body["error"].as_str().unwrap_or("?");
            match fields.is_empty() {
                true => anyhow::bail!("{endpoint} answered {code}: {error}"),
                false => anyhow::bail!("{endpoint} answered {code}: {}", fields.join("; ")),
            }
        }
        Err(e) => anyhow::bail!("cannot reach {endpoint}: {e}"),
    }
}
