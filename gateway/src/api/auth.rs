//! Authentication of the query API, the dashboard and (optionally) `/metrics`.
//!
//! With at least one token configured (`http.tokens`, `http.token_file`), a protected route
//! answers only a request that carries `Authorization: Bearer <token>` or the session cookie
//! that `POST /login` sets. Tokens are compared in constant time over their SHA-256 digests
//! (equal lengths whatever the token's, so neither content nor length leaks through timing),
//! and every configured token is compared, so the time does not say which one matched. The
//! cookie holds a random session id (256 bits from the system's CSPRNG), never the token; the
//! gateway keeps only the ids' digests, in memory, for [`SESSION_TTL`]; `/logout` forgets one.
//!
//! Unauthenticated: a browser asking for a page (`Accept: text/html`, outside `/api/`) is
//! sent to `/login`; anything else gets 401 with `WWW-Authenticate: Bearer` and a JSON error.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::get;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use subtle::{Choice, ConstantTimeEq};

use super::error::ErrorBody;

/// The session cookie's name.
pub const COOKIE: &str = "gateway_session";
/// How long a session lasts after the login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; a new login beyond it ends the one closest to expiry.
const MAX_SESSIONS: usize = 1024;

type Digest = [u8; 32];

fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// The accepted tokens (as digests) and the live sessions.
pub struct Auth {
    tokens: Vec<Digest>,
    /// Digest of a session id -> when it expires.
    sessions: Mutex<HashMap<Digest, Instant>>,
    rng: SystemRandom,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Authentication with these tokens; `None` when there are none (the API is open).
    pub fn new<T: AsRef<str>>(tokens: &[T]) -> Option<Arc<Self>> {
        if tokens.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            tokens: tokens
                .iter()
                .map(|t| sha256(t.as_ref().as_bytes()))
                .collect(),
            sessions: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        }))
    }

    /// Whether `presented` is one of the tokens, in time independent of which and of its
    /// content.
    pub fn token_ok(&self, presented: &str) -> bool {
        let d = sha256(presented.as_bytes());
        let mut ok = Choice::from(0);
        for t in &self.tokens {
            ok |= t[..].ct_eq(&d[..]);
        }
        ok.into()
    }

    /// Starts a session: its id, for the cookie.
    fn start_session(&self) -> Option<String> {
        let mut id = [0u8; 32];
        self.rng.fill(&mut id).ok()?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, expires| *expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(sha256(id.as_bytes()), now + SESSION_TTL);
        Some(id)
    }

    /// Whether `id` is a live session. Looked up by its digest, so the map's timing says
    /// nothing useful about ids.
    fn session_ok(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .get(&sha256(id.as_bytes()))
            .is_some_and(|expires| *expires > Instant::now())
    }

    fn end_session(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sha256(id.as_bytes()));
    }

    /// Whether a request's headers carry a valid bearer token or session cookie.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        if let Some(token) = bearer(headers) {
            return self.token_ok(token);
        }
        session_cookie(headers).is_some_and(|id| self.session_ok(id))
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The session cookie's value, from any `Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE).then_some(value))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// 401 with `WWW-Authenticate: Bearer` and a JSON error.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gateway\""),
        )],
        Json(ErrorBody {
            error: "authentication required: send `Authorization: Bearer <token>` \
                    (or log in at /login)"
                .into(),
        }),
    )
        .into_response()
}

async fn require(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    if auth.authorized(req.headers()) {
        return next.run(req).await;
    }
    if wants_html(req.headers()) && !req.uri().path().starts_with("/api/") {
        return Redirect::to("/login").into_response();
    }
    unauthorized()
}

/// `router`'s routes, behind `auth` when there is one (unmatched paths stay 404).
pub fn protect<S>(router: axum::Router<S>, auth: Option<&Arc<Auth>>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    match auth {
        Some(a) => router.route_layer(middleware::from_fn_with_state(Arc::clone(a), require)),
        None => router,
    }
}

/// `GET /login` (the form), `POST /login` and `/logout`.
pub fn routes(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout).post(logout))
        .with_state(auth)
}

const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gateway: log in</title>
<style>body{font-family:system-ui,sans-serif;display:flex;justify-content:center;margin-top:15vh}
form{display:flex;flex-direction:column;gap:.6em;min-width:18em}input,button{font:inherit;padding:.4em}
.error{color:#b00020}</style></head>
<body><form method="post" action="/login"><h1>City telemetry gateway</h1>
<!--error--><label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button></form></body></html>
"#;

fn page(status: StatusCode, error: Option<&str>) -> Response {
    let html = match error {
        Some(e) => LOGIN_PAGE.replace("<!--error-->", &format!("<p class=\"error\">{e}</p>")),
        None => LOGIN_PAGE.to_owned(),
    };
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(html),
    )
        .into_response()
}

async fn login_page() -> Response {
    page(StatusCode::OK, None)
}

/// The login form's field.
#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(State(auth): State<Arc<Auth>>, Form(form): Form<LoginForm>) -> Response {
    if !auth.token_ok(form.token.trim()) {
        tracing::warn!("dashboard login refused: wrong token");
        return page(StatusCode::UNAUTHORIZED, Some("Wrong token."));
    }
    let Some(id) = auth.start_session() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no random session id").into_response();
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        auth.end_session(id);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("gateway_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_sessions() {
        let auth = Auth::new(&["first-token-0123456789", "second-token-0123456789"]).unwrap();
        assert!(auth.token_ok("first-token-0123456789"));
        assert!(auth.token_ok("second-token-0123456789"));
        assert!(!auth.token_ok("first-token-012345678"));
        assert!(!auth.token_ok(""));
        let id = auth.start_session().unwrap();
        assert_eq!(id.len(), 64);
        assert!(auth.session_ok(&id));
        assert!(!auth.session_ok("first-token-0123456789"));
        auth.end_session(&id);
        assert!(!auth.session_ok(&id));
        assert!(Auth::new::<&str>(&[]).is_none());
    }

    #[test]
    fn headers_are_read() {
        let auth = Auth::new(&["the-token-0123456789"]).unwrap();
        let id = auth.start_session().unwrap();
        let mut h = HeaderMap::new();
        assert!(!auth.authorized(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer the-token-0123456789"),
        );
        assert!(auth.authorized(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong"),
        );
        assert!(!auth.authorized(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {COOKIE}={id}")).unwrap(),
        );
        assert!(auth.authorized(&h));
    }
}
