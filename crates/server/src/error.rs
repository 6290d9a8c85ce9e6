//! The server's one error type and its one body shape.
//!
//! Every error answer is `{"error": SENTENCE, "errors": [{field, message}]}`:
//! `error` is always there for a person to read, `errors` names each bad
//! input field (empty when no field is at fault), so the page shows both the
//! same way wherever they come from.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use mnist_train::FieldError;

/// What went wrong with a request; the variant decides the status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request's fields, each with what is allowed.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// 401: no token or a wrong one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the request is not allowed here (foreign origin, watch-only server).
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the server's state forbids it now (a run is training, already over).
    #[error("{message}")]
    Conflict {
        /// What is in the way, for a person to read.
        message: String,
        /// The run in the way, for the page to open.
        run_id: Option<String>,
    },
    /// 503: the data set or a checkpoint is missing or unreadable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an I/O failure on the server.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// One invalid field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }

    /// 404 for a run id.
    pub fn no_run(id: &str) -> Self {
        ApiError::NotFound(format!("no run {id}"))
    }

    /// 409 without a run to point at.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::Conflict {
            message: message.into(),
            run_id: None,
        }
    }
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(FieldError::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A blocking task that panicked or was cancelled.
impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let fields = match self {
            ApiError::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        };
        let run_id = match self {
            ApiError::Conflict { run_id, .. } => run_id.clone(),
            _ => None,
        };
        HttpResponse::build(self.status_code()).json(crate::protocol::ErrorBody {
            error: self.to_string(),
            errors: fields,
            run_id,
        })
    }
}

/// What handlers return.
pub type ApiResult = Result<HttpResponse, ApiError>;

/// Malformed JSON bodies get the same error shape as invalid fields.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let message = format!("not a JSON configuration: {err}");
    ApiError::field("body", message).into()
}
