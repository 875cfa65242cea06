//! The query API's error type and how it becomes an HTTP response: a status and a JSON
//! body `{"error": "..."}` whose message says what is wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is missing, malformed or out of bounds (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The hot tier cannot be opened yet (HTTP 503): the gateway has not created it.
    #[error("hot tier unavailable: {0}")]
    Unavailable(String),
    /// Every query thread is busy and the queue is full (HTTP 503, `Retry-After: 1`).
    #[error("too many queries in progress; retry shortly")]
    Busy,
    /// SQLite failed while reading (HTTP 500).
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The state library failed while reading (HTTP 500).
    #[error("state error: {0}")]
    State(#[from] ingest::IngestError),
    /// The store the API reads (VictoriaMetrics) cannot be reached or did not answer in
    /// time (HTTP 503). The message names the store's URL, never its credentials.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// The store answered with an error or with something that is not a query answer
    /// (HTTP 502). The message names the store's URL, never its credentials.
    #[error("store error: {0}")]
    Store(String),
    /// A blocking task panicked or was cancelled (HTTP 500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for a 400 with a message.
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) | Self::Busy | Self::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Store(_) => StatusCode::BAD_GATEWAY,
            Self::Database(_) | Self::State(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, for a human.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(
            self,
            Self::Database(_) | Self::Internal(_) | Self::Store(_) | Self::StoreUnavailable(_)
        ) {
            tracing::warn!(error = %self, "query failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if matches!(self, Self::Busy) {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
