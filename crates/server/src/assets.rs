//! The page's files, embedded at build time from `web/static`.
//!
//! `MNIST_MONITOR_WEB_DIR=web/static` serves them from that folder instead,
//! read at each request: for working on the page without rebuilding.

use actix_web::{HttpRequest, HttpResponse};

#[derive(rust_embed::Embed)]
#[folder = "../../web/static/"]
struct Assets;

/// The default service: the embedded file at the request's path (`/` is
/// `index.html`); a JSON 404 under `api/` and `ws/`, a plain one elsewhere.
pub async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match file(path) {
        Some(data) => HttpResponse::Ok()
            .content_type(mime_guess::from_path(path).first_or_octet_stream().as_ref())
            .insert_header(("cache-control", "no-cache"))
            .body(data),
        None if path.starts_with("api/") || path.starts_with("ws/") => {
            use actix_web::ResponseError;
            crate::error::ApiError::NotFound(format!("no such endpoint: /{path}")).error_response()
        }
        None => HttpResponse::NotFound().body("not found"),
    }
}

/// The page's file at `path`: from `MNIST_MONITOR_WEB_DIR` when set (never
/// outside it), else embedded.
fn file(path: &str) -> Option<Vec<u8>> {
    match std::env::var_os("MNIST_MONITOR_WEB_DIR") {
        Some(dir) => {
            let inside = std::path::Path::new(path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            inside
                .then(|| std::fs::read(std::path::Path::new(&dir).join(path)).ok())
                .flatten()
        }
        None => Assets::get(path).map(|f| f.data.into_owned()),
    }
}
