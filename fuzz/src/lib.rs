//! Fuzzing support for the telemetry pipeline: the oracles shared by every fuzz target
//! and by the ordinary nasty-input test.

pub mod ingest_oracle;
pub mod oracle;
