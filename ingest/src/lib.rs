//! The ingest library: raw MQTT messages in, durable state out.
//!
//! ```text
//! Inbound --route--> decode --> validate --> one SQLite transaction per batch
//!                                            (hot tier + outbox + dead letters + devices)
//! outbox --Forwarder--> InfluxDB v2 write API (split on 400/422, retry on 429/5xx)
//! ```
//!
//! No MQTT and no HTTP server live here: the `gateway` crate owns the broker session,
//! batching timing and acknowledgements, and calls [`Pipeline::process`] with a batch; an
//! `Ok` means every message of the batch is durable (as readings or dead letters) and may
//! be acknowledged.

pub mod applier;
pub mod backoff;
pub mod chunk;
pub mod config;
pub mod deadletter;
pub mod decode;
pub mod devices;
pub mod error;
pub mod forward;
pub mod hot;
pub mod lineproto;
pub mod log;
pub mod message;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod query;
pub mod registry;
pub mod retention;
pub mod route;
pub mod status;
pub mod store;
pub mod validate;

pub use config::{IngestConfig, OutboxPolicy, Synchronous};
pub use deadletter::DeadLetter;
pub use error::IngestError;
pub use forward::{Forwarder, SinkConfig, StoreStatus};
pub use message::Inbound;
pub use pipeline::{BatchOutcome, Pipeline};
pub use retention::RetentionOutcome;
pub use route::{Format, RouteConfig, default_routes};
pub use validate::Reason;
