//! The dashboard's built assets (`gateway/dashboard/dist/`, made by `npm run build`),
//! embedded in the binary so that the gateway serves them with no npm and no internet.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "dashboard/dist/"]
struct Assets;

fn serve(path: &str, cache: &'static str) -> Response {
    match Assets::get(path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            let mut resp = file.data.into_owned().into_response();
            let headers = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&mime) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            resp
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /`: the page. Not cached, so a new gateway's assets are picked up at once.
pub async fn index() -> Response {
    serve("index.html", "no-cache")
}

/// `GET /assets/{*path}`: scripts and styles, named by content hash, so cached for good.
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(
        &format!("assets/{path}"),
        "public, max-age=31536000, immutable",
    )
}
