//! The page's files, embedded at build time from `web/static`.

use actix_web::{HttpRequest, HttpResponse};

#[derive(rust_embed::Embed)]
#[folder = "../../web/static/"]
struct Assets;

/// The default service: the embedded file at the request's path (`/` is
/// `index.html`); a JSON 404 under `api/` and `ws/`, a plain one elsewhere.
pub async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match Assets::get(path) {
        Some(file) => HttpResponse::Ok()
            .content_type(mime_guess::from_path(path).first_or_octet_stream().as_ref())
            .insert_header(("cache-control", "no-cache"))
            .body(file.data.into_owned()),
        None if path.starts_with("api/") || path.starts_with("ws/") => {
            use actix_web::ResponseError;
            crate::error::ApiError::NotFound(format!("no such endpoint: /{path}")).error_response()
        }
        None => HttpResponse::NotFound().body("not found"),
    }
}
