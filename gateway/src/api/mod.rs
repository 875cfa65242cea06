//! The operators' query API and dashboard: JSON endpoints over the hot tier, their
//! OpenAPI document, and the embedded dashboard page, as one axum router to merge into the
//! gateway's HTTP server.
//!
//! | path | what |
//! |---|---|
//! | `GET /api/devices` | devices, status, last seen, firmware, gaps, duplicates, dropped readings, stale flag |
//! | `GET /api/series` | downsampled series of device:metric pairs |
//! | `GET /api/latest` | latest values per district and kind |
//! | `GET /api/aqi` | VN_AQI hourly and daily, US AQI, category and colour per station |
//! | `GET /api/stats` | dead letters by reason, ingest rate, outbox depth, store lag |
//! | `GET /api/catalog` | the metric catalog (name, unit, description, range) and device kinds |
//! | `GET /api/alerts` | active alerts and the alert history ([`alerts`]) |
//! | `GET /api/openapi.json` | the OpenAPI document |
//! | `GET /` | the dashboard |
//! | `GET /public/aqi`, `GET /public`, `GET /public/{district}` | the public AQI feed and its street-display page ([`public`]) |
//!
//! With tokens configured, [`router_with_auth`] puts all of these but `/public/*` behind
//! [`auth`] and adds `/login` and `/logout`. `/public/*` stays open on purpose: it shows
//! what the public MQTT feed publishes anyway (`public.http_enabled = false` removes it).

pub mod alerts;
pub mod auth;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod handlers;
pub mod model;
pub mod openapi;
pub mod params;
pub mod public;
pub mod queries;
pub mod store;

pub use db::ReadPool;
pub use error::ApiError;

use axum::Router;
use axum::routing::get;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// Settings of the query API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The hot tier's SQLite file (opened read-only). No default: it is the ingest
    /// side's file in the data directory.
    pub db_path: PathBuf,
    /// Staleness threshold for devices whose meta gives no reporting period
    /// (default 300 s; with a period, 3 periods).
    pub stale_after: Duration,
    /// How long a live `/api/aqi` answer is reused (default 30 s: the hourly NowCast
    /// moves slowly, and each answer reads 24 hours of every station).
    pub aqi_cache_ttl: Duration,
    /// The running gateway's message-log positions, for `/api/stats` (default none:
    /// `gateway query` reads a data directory without a live process).
    pub log: Option<Arc<ingest::applier::Progress>>,
    /// The hot tier's head when the writer runs in this process (default none: the head
    /// is read from its stored rows).
    pub head: Option<ingest::hot::HotHead>,
    /// Threads (each with a connection) that answer queries (default 4).
    pub read_threads: usize,
    /// Queries waiting for a thread beyond which a request gets 503 (default 64).
    pub read_queue: usize,
    /// Device kinds accepted besides the built-in four (`ingest.device_kinds`; default
    /// none), shared with each query.
    pub device_kinds: Arc<[String]>,
    /// Serve `/public/*` without a token, with this `max-age` in seconds (default 30);
    /// none: no `/public/*` routes.
    pub public_cache_s: Option<u64>,
    /// Answer devices, series, latest values, AQI and stats from the store (several
    /// gateways' merged view) instead of the hot tier (default none: the hot tier).
    pub store: Option<store::StoreSource>,
    /// Whether this node has a hot tier at `db_path` (default true). A query-only node
    /// (`gateway serve`) has none: dead letters, outbox and alert history are then empty.
    pub hot_tier: bool,
}

impl ApiConfig {
    /// Defaults for a database file.
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        Self {
            db_path: db_path.into(),
            stale_after: queries::DEFAULT_STALE_AFTER,
            aqi_cache_ttl: Duration::from_secs(30),
            log: None,
            head: None,
            read_threads: 4,
            read_queue: 64,
            device_kinds: Arc::from(Vec::new()),
            public_cache_s: Some(30),
            store: None,
            hot_tier: true,
        }
    }

    /// A query-only node's settings: everything from `store`, no hot tier.
    pub fn store_only(store: store::StoreSource) -> Self {
        Self {
            store: Some(store),
            hot_tier: false,
            ..Self::new(PathBuf::new())
        }
    }
}

/// A short-lived cache of one kind of answer, keyed by its parameters.
#[derive(Debug)]
pub struct AnswerCache<T> {
    entries: Mutex<Vec<(String, Instant, Arc<T>)>>,
}

impl<T> Default for AnswerCache<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }
}

/// Most distinct parameter sets kept.
const CACHE_ENTRIES: usize = 16;

impl<T> AnswerCache<T> {
    /// The answer for `key` if younger than `ttl`.
    pub fn get(&self, key: &str, ttl: Duration) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .find(|(k, at, _)| k == key && at.elapsed() < ttl)
            .map(|(_, _, v)| v.clone())
    }

    /// Stores an answer computed at `at`.
    pub fn put(&self, key: String, value: Arc<T>, at: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|(k, _, _)| k != &key);
        if entries.len() >= CACHE_ENTRIES {
            entries.remove(0);
        }
        entries.push((key, at, value));
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Settings.
    pub config: Arc<ApiConfig>,
    /// Read-only connections to the hot tier (none on a query-only node).
    pub pool: Option<ReadPool>,
    /// The store's answers, when it is the query source; its calls are bounded like
    /// the pool's.
    pub store: Option<db::StorePool>,
    /// Recent live AQI answers.
    pub aqi_cache: Arc<AnswerCache<model::AqiResponse>>,
    /// Hourly particulate means behind the AQI answers.
    pub hour_cache: Arc<queries::HourCache>,
}

impl ApiState {
    /// State for a configuration; starts the query threads.
    pub fn new(config: ApiConfig) -> std::io::Result<Self> {
        let pool = match config.hot_tier {
            true => Some(
                ReadPool::new(config.db_path.clone())
                    .with_head(config.head.clone())
                    .with_workers(config.read_threads, config.read_queue)?,
            ),
            false => None,
        };
        let store = config
            .store
            .clone()
            .map(|s| db::StorePool::new(s, config.read_threads, config.read_queue))
            .transpose()?;
        Ok(Self {
            pool,
            store,
            config: Arc::new(config),
            aqi_cache: Arc::default(),
            hour_cache: Arc::default(),
        })
    }
}

impl ApiState {
    /// Answers from the store when it is the source (`from_store`), else from the hot
    /// tier (`hot`).
    pub async fn answer<T: Send + 'static>(
        &self,
        hot: impl FnOnce(&ingest::query::HotRead<'_>) -> Result<T, ApiError> + Send + 'static,
        from_store: impl FnOnce(&store::StoreSource) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        match (&self.store, &self.pool) {
            (Some(s), _) => s.run(from_store).await,
            (None, Some(pool)) => pool.run(hot).await,
            (None, None) => Err(ApiError::Unavailable(
                "this node has neither a hot tier nor a store".into(),
            )),
        }
    }

    /// Runs `f` on the hot tier; `None` on a query-only node (no local state).
    pub async fn local<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ingest::query::HotRead<'_>) -> Result<T, ApiError> + Send + 'static,
    ) -> Option<Result<T, ApiError>> {
        match &self.pool {
            Some(pool) => Some(pool.run(f).await),
            None => None,
        }
    }
}

/// The query API, its OpenAPI document and the dashboard, ready to merge into the
/// gateway's router: `router.merge(api::router(ApiConfig::new(db_path)))`. Open to all;
/// see [`router_with_auth`].
///
/// # Panics
/// When the query threads cannot be started.
pub fn router(config: ApiConfig) -> Router {
    router_with_auth(config, None).expect("cannot start the API's query threads")
}

/// [`router`], behind `auth` when given (with `/login` and `/logout` added).
pub fn router_with_auth(
    config: ApiConfig,
    auth: Option<Arc<auth::Auth>>,
) -> std::io::Result<Router> {
    let routes = Router::new()
        .route("/api/devices", get(handlers::devices))
        .route("/api/series", get(handlers::series))
        .route("/api/latest", get(handlers::latest))
        .route("/api/aqi", get(handlers::aqi))
        .route("/api/stats", get(handlers::stats))
        .route("/api/catalog", get(handlers::catalog))
        .route("/api/alerts", get(alerts::alerts))
        .route(
            OPENAPI_PATH,
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::document(),
                )
            }),
        )
        .route("/", get(dashboard::index))
        .route("/assets/{*path}", get(dashboard::asset));
    let public = config.public_cache_s.is_some();
    let state = ApiState::new(config)?;
    let mut app = auth::protect(routes, auth.as_ref()).with_state(state.clone());
    if public {
        // Outside `auth::protect`: open by design.
        app = app.merge(
            Router::new()
                .route("/public/aqi", get(public::aqi))
                .route("/public", get(public::page))
                .route("/public/", get(public::page))
                .route("/public/{district}", get(public::district_page))
                .with_state(state),
        );
    }
    Ok(match auth {
        Some(a) => app.merge(auth::routes(a)),
        None => app,
    })
}
