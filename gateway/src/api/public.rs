//! The public endpoints, open even when the API needs a token (they show only what the
//! public MQTT feed publishes anyway; see [`crate::public`]):
//!
//! - `GET /public/aqi`: the feed as JSON ([`Feed`]: every district and station),
//!   `Access-Control-Allow-Origin: *`, `Cache-Control: public, max-age=N`. It reuses the
//!   live `/api/aqi` answer (one computation for dashboards and the public).
//! - `GET /public`, `GET /public/{district}`: a self-contained page (no external resource)
//!   for a street display: one district (the first one for `/public`) as a large panel in
//!   its band's colour, in Vietnamese and English, refreshing itself every minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::model::AqiResponse;
use super::params::AqiParams;
use super::{ApiState, handlers};
use crate::public::Feed;

/// The page, embedded in the binary.
pub const PAGE: &str = include_str!("public.html");

/// The `/api/aqi` cache key of the live, unfiltered answer (as `handlers::aqi` makes it).
fn cache_key() -> String {
    let p = AqiParams::default();
    format!("{:?}/{:?}", p.district, p.device)
}

/// `GET /public/aqi`.
pub async fn aqi(State(s): State<ApiState>) -> Response {
    let max_age = s.config.public_cache_s.unwrap_or(30);
    let ttl = s
        .config
        .aqi_cache_ttl
        .min(Duration::from_secs(max_age.max(1)));
    let key = cache_key();
    let answer = match s.aqi_cache.get(&key, ttl) {
        Some(hit) => Ok(hit),
        None => {
            let now = handlers::now_ns();
            handlers::aqi_answer(&s, AqiParams::default(), now)
                .await
                .map(|fresh: AqiResponse| {
                    let fresh = Arc::new(fresh);
                    s.aqi_cache.put(key, fresh.clone(), Instant::now());
                    fresh
                })
        }
    };
    let mut resp = match answer {
        Ok(a) => Json(Feed::from_aqi(&a)).into_response(),
        Err(e) => e.into_response(),
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if resp.status().is_success()
        && let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}"))
    {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}

fn page_response() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /public`: the page, showing the first district.
pub async fn page() -> Response {
    page_response()
}

/// `GET /public/{district}`: the page, showing that district.
pub async fn district_page(Path(district): Path<String>) -> Response {
    if super::params::check_slug("district", &district).is_err() {
        return (StatusCode::NOT_FOUND, "no such district").into_response();
    }
    page_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_is_self_contained_and_bilingual() {
        let page = super::PAGE;
        for external in ["http://", "https://", "src=\"", "<link", "@import"] {
            assert!(!page.contains(external), "{external}");
        }
        for word in [
            "Đang tải",
            "Loading",
            "setInterval(load, 60000)",
            "/public/aqi",
        ] {
            assert!(page.contains(word), "{word}");
        }
    }
}
