//! The telemetry gateway service: an MQTT 5 consumer that acknowledges each
//! message once the raw-message log holding it is durable (the `ingest`
//! library applies the log to the SQLite state), the forwarder to the
//! time-series store, the HTTP server (`/metrics`, `/health`, the query API
//! and the dashboard), device provisioning, the configuration and the command
//! line.
//!
//! The binary is `gateway` (`src/main.rs`); this library exposes the parts
//! so that tests and benchmarks can reuse them.

pub mod alerts;
pub mod api;
pub mod aqi;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod deadletters;
pub mod forward;
pub mod health;
pub mod http;
pub mod mqtt;
pub mod pipeline;
pub mod provision;
pub mod public;
pub mod query_cli;
pub mod serve;
pub mod service;
pub mod telemetry;
