//! Who may talk to the server, checked on every request before any handler
//! runs (the way Jupyter Server guards a loopback notebook):
//!
//! 1. **Host.** A server bound to loopback answers only requests whose `Host`
//!    is a loopback name (`localhost`, `127.x.y.z`, `[::1]`, any port) or the
//!    host of an origin named with `--allow-origin`. A web page that rebinds
//!    its own DNS name to 127.0.0.1 therefore gets 403, not the API.
//! 2. **Token.** When the server has a token (required off loopback), every
//!    request carries it: `Authorization: Bearer …`, `?token=…`, or the
//!    cookie that opening the page with `?token=` sets. The cookie's name
//!    holds the port, so two monitors on one host never clobber each other.
//! 3. **Origin.** A request that names an `Origin` (browsers do on every
//!    POST and websocket, and on cross-origin fetches) must name the
//!    server's own origin (the scheme-less `Host`) or an allowed one; `null`
//!    never passes. Another site, or another port of the same host (which
//!    `SameSite` cookies do not keep apart), can neither drive the server
//!    nor read its websockets. Clients without `Origin` (curl, scripts) are
//!    not browsers and pass.
//!
//! Every response also carries a strict `Content-Security-Policy` (scripts
//! only from the server itself), `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`
//! (the page's URL may hold the token).

use crate::error::ApiError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use std::net::{IpAddr, SocketAddr};

/// The headers every response carries.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// The access rules of one listening server.
#[derive(Debug, Clone)]
pub struct Access {
    token: Option<String>,
    /// Bound to a loopback address: only loopback `Host` names are answered.
    loopback: bool,
    /// Extra origins (`scheme://host[:port]`, lower case, no trailing slash).
    allowed_origins: Vec<String>,
    cookie: String,
}

/// Why a request was turned away.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A loopback server got this `Host` (lower-cased), not a loopback name
    /// nor an allowed origin's: a DNS rebinding attempt.
    Host(String),
    /// This `Origin` (lower-cased) is neither the server's own nor allowed.
    Origin(String),
    /// A token is required and none of the request's matched it.
    Token,
}

impl Refusal {
    fn response(&self) -> HttpResponse {
        use actix_web::ResponseError;
        let error = match self {
            Refusal::Host(host) => ApiError::Forbidden(format!(
                "Host {host:?} is not a loopback name: this server listens on loopback and answers \
                 only localhost, 127.0.0.1 or [::1] (protection against DNS rebinding); \
                 name other origins with --allow-origin"
            )),
            Refusal::Origin(origin) => ApiError::Forbidden(format!(
                "Origin {origin:?} is not this server's: pages of other sites may not drive \
                 or read it; name trusted origins with --allow-origin"
            )),
            Refusal::Token => ApiError::Unauthorized(
                "a token is required: open the page with ?token=… or send Authorization: Bearer …"
                    .into(),
            ),
        };
        error.error_response()
    }
}

impl Access {
    /// Rules for a server listening on `addr`. `allowed_origins` are checked
    /// by [`normalise_origin`]; an invalid one is an error naming it.
    pub fn new(
        addr: SocketAddr,
        token: Option<String>,
        allowed_origins: &[String],
    ) -> Result<Self, BadOrigin> {
        let allowed_origins = allowed_origins
            .iter()
            .map(|o| normalise_origin(o))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            token: token.filter(|t| !t.is_empty()),
            loopback: addr.ip().is_loopback(),
            allowed_origins,
            cookie: format!("mnist_monitor_token_{}", addr.port()),
        })
    }

    /// The cookie that carries the token for this server.
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    /// Applies the three checks, in order (Host, token, Origin).
    pub fn check(&self, req: &ServiceRequest) -> Result<(), Refusal> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(host) = &host {
            if self.loopback && !self.host_allowed(host) {
                return Err(Refusal::Host(host.clone()));
            }
        }
        if let Some(token) = &self.token {
            if !self.carries_token(req, token) {
                return Err(Refusal::Token);
            }
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            if !self.origin_allowed(&origin, host.as_deref()) {
                return Err(Refusal::Origin(origin));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        is_loopback_host(host)
            || self
                .allowed_origins
                .iter()
                .any(|o| authority(o) == Some(host) || authority(o).map(strip_port) == Some(host))
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/');
        if self.allowed_origins.iter().any(|o| o == origin) {
            return true;
        }
        // Our own origin: the page we served, whatever name the user typed.
        matches!((authority(origin), host), (Some(a), Some(h)) if a == h)
    }

    fn carries_token(&self, req: &ServiceRequest, token: &str) -> bool {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let query = query_token(req.query_string());
        let cookie = req.cookie(&self.cookie).map(|c| c.value().to_string());
        [bearer, query, cookie]
            .into_iter()
            .flatten()
            .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    }
}

/// A fresh token: 128 bits from the operating system's random source, as
/// 32 hex digits.
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn query_token(query: &str) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(query)
        .ok()
        .and_then(|q| q.get("token").cloned())
}

/// Compares without stopping at the first difference, so response times
/// do not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An `--allow-origin` that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--allow-origin {0:?}: must be an origin such as https://monitor.example.org or http://host:8080")]
pub struct BadOrigin(pub String);

/// `scheme://authority` of an origin, lower case, checked.
pub fn normalise_origin(origin: &str) -> Result<String, BadOrigin> {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let ok = (o.starts_with("http://") || o.starts_with("https://"))
        && authority(&o).is_some_and(|a| !a.is_empty() && !a.contains(['/', '?', '#', '@']));
    if ok {
        Ok(o)
    } else {
        Err(BadOrigin(origin.to_string()))
    }
}

/// The `host[:port]` of `scheme://host[:port]`.
fn authority(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, rest)| rest)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080
        return rest.split_once(']').map_or(host, |(h, _)| h);
    }
    host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = strip_port(host);
    name == "localhost"
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware: refuses what [`Access::check`] refuses, sets the token
/// cookie when the page is opened with `?token=`, and adds the security
/// headers to every response.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let access = req
        .app_data::<web::Data<Access>>()
        .expect("the server registers its Access")
        .clone();
    let mut res = match access.check(&req) {
        Err(refusal) => {
            let (req, _) = req.into_parts();
            ServiceResponse::new(req, refusal.response()).map_into_right_body()
        }
        Ok(()) => {
            let set_cookie = access.token.is_some() && query_token(req.query_string()).is_some();
            let mut res = next.call(req).await?.map_into_left_body();
            if set_cookie {
                let cookie = actix_web::cookie::Cookie::build(
                    access.cookie.clone(),
                    access.token.clone().unwrap_or_default(),
                )
                .path("/")
                .http_only(true)
                .same_site(actix_web::cookie::SameSite::Strict)
                .finish();
                let _ = res.response_mut().add_cookie(&cookie);
            }
            res
        }
    };
    let headers = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        // A handler may set a stricter policy of its own (the HTML report).
        if name == "content-security-policy" && headers.contains_key(name) {
            continue;
        }
        headers.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn local(token: Option<&str>, allowed: &[&str]) -> Access {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Access::new(
            "127.0.0.1:8080".parse().unwrap(),
            token.map(str::to_string),
            &allowed,
        )
        .unwrap()
    }

    fn check(access: &Access, headers: &[(&str, &str)], uri: &str) -> Result<(), Refusal> {
        let mut req = TestRequest::post().uri(uri);
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        access.check(&req.to_srv_request())
    }

    #[test]
    fn loopback_names_pass_and_rebound_names_do_not() {
        let a = local(None, &[]);
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "127.3.4.5",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert_eq!(check(&a, &[("host", host)], "/"), Ok(()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:8080",
        ] {
            assert!(
                matches!(check(&a, &[("host", host)], "/"), Err(Refusal::Host(_))),
                "{host}"
            );
        }
        let proxied = local(None, &["https://monitor.lab.example"]);
        assert_eq!(
            check(&proxied, &[("host", "monitor.lab.example")], "/"),
            Ok(())
        );
    }

    #[test]
    fn only_the_own_or_an_allowed_origin_passes() {
        let a = local(None, &["https://monitor.lab.example"]);
        let host = ("host", "localhost:8080");
        assert_eq!(check(&a, &[host], "/"), Ok(()), "no Origin: not a browser");
        assert_eq!(
            check(&a, &[host, ("origin", "http://localhost:8080")], "/"),
            Ok(())
        );
        assert_eq!(
            check(&a, &[host, ("origin", "https://monitor.lab.example")], "/"),
            Ok(())
        );
        for origin in [
            "http://localhost:3000",
            "https://evil.example",
            "null",
            "http://127.0.0.1:8080",
        ] {
            assert!(
                matches!(
                    check(&a, &[host, ("origin", origin)], "/"),
                    Err(Refusal::Origin(_))
                ),
                "{origin}"
            );
        }
    }

    #[test]
    fn a_token_server_needs_the_token_in_one_of_three_places() {
        let a = local(Some("s3cret"), &[]);
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(check(&a, &[host], "/api/runs"), Err(Refusal::Token));
        assert_eq!(check(&a, &[host], "/?token=wrong"), Err(Refusal::Token));
        assert_eq!(check(&a, &[host], "/?token=s3cret"), Ok(()));
        assert_eq!(
            check(&a, &[host, ("authorization", "Bearer s3cret")], "/"),
            Ok(())
        );
        assert_eq!(
            check(
                &a,
                &[host, ("cookie", "mnist_monitor_token_8080=s3cret")],
                "/"
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &a,
                &[host, ("cookie", "mnist_monitor_token_9999=s3cret")],
                "/"
            ),
            Err(Refusal::Token),
            "another port's cookie is not this server's"
        );
    }

    #[test]
    fn origins_are_checked_when_named() {
        assert!(normalise_origin("https://Monitor.example.org/").is_ok());
        assert!(normalise_origin("monitor.example.org").is_err());
        assert!(normalise_origin("https://a.example/path").is_err());
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert!(is_loopback_host("[::1]"));
    }
}
