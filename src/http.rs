//! Talking to a running server from the command line (`sweep --server`,
//! `control`): its token, a JSON POST, and its error shape read back.

use anyhow::Context;
use mnist_server::protocol::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
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

/// POSTs `body` to `server` + `path`; the answer read as `A`, or an error
/// saying what the server answered (its `error`, and each field's).
pub fn post_json<A: DeserializeOwned>(
    server: &str,
    path: &str,
    token: Option<&str>,
    body: &impl Serialize,
) -> anyhow::Result<A> {
    let endpoint = format!("{}{path}", server.trim_end_matches('/'));
    let mut request = ureq::post(&endpoint).set("content-type", "application/json");
    if let Some(t) = token {
        request = request.set("authorization", &format!("Bearer {t}"));
    }
    let body = serde_json::to_string(body).context("the request serialises")?;
    match request.send_string(&body) {
        Ok(r) => {
            let text = r.into_string()?;
            serde_json::from_str(&text)
                .with_context(|| format!("{endpoint} answered something unexpected: {text}"))
        }
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            let Ok(body) = serde_json::from_str::<ErrorBody>(&text) else {
                anyhow::bail!("{endpoint} answered {code}: ?");
            };
            let fields: Vec<String> = body
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            match fields.is_empty() {
                true => anyhow::bail!("{endpoint} answered {code}: {}", body.error),
                false => anyhow::bail!("{endpoint} answered {code}: {}", fields.join("; ")),
            }
        }
        Err(e) => anyhow::bail!("cannot reach {endpoint}: {e}"),
    }
}
