//! The binding to the `ingest` library: opens the SQLite pipeline with the
//! gateway's configuration and adapts it to the consumer's [`Committer`]
//! (classifying a full outbox as back-pressure), plus the read-side queries
//! the HTTP handlers need.

use ingest::{Inbound, IngestError, Pipeline};

use crate::config::Config;
use crate::consumer::{CommitError, Committed, Committer};

/// The ingest configuration the gateway runs with: the `[ingest]` table,
/// with forwarding on exactly when a store URL is configured.
pub fn ingest_config(cfg: &Config) -> ingest::IngestConfig {
    let mut ic = cfg.ingest.clone();
    ic.forward_enabled = cfg.store.url.is_some();
    ic
}

/// Opens the pipeline (creating the data directory and schema if needed).
pub fn open(cfg: &Config) -> Result<Pipeline, IngestError> {
    let ic = ingest_config(cfg);
    ic.validate()?;
    Pipeline::open(&cfg.data_dir, ic)
}

/// [`Committer`] over an ingest [`Pipeline`].
#[derive(Debug)]
pub struct IngestCommitter {
    pipeline: Pipeline,
}

impl IngestCommitter {
    /// Wraps an open pipeline.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

impl Committer for IngestCommitter {
    fn commit(&mut self, batch: &[Inbound]) -> Result<Committed, CommitError> {
        match self.pipeline.process(batch) {
            Ok(o) => Ok(Committed {
                readings: o.readings_committed,
                duplicates: o.duplicates,
                dead_letters: o.dead_letters,
            }),
            Err(e @ IngestError::OutboxFull { .. }) => {
                Err(CommitError::Backpressure(e.to_string()))
            }
            Err(e) => Err(CommitError::Failed(e.to_string())),
        }
    }

    fn housekeeping(&mut self) -> Result<(), CommitError> {
        let outcome = self
            .pipeline
            .enforce_retention(ingest::message::now_ns())
            .map_err(|e| CommitError::Failed(e.to_string()))?;
        tracing::debug!(?outcome, "retention pass");
        Ok(())
    }
}
