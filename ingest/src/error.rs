//! The library's error type: what callers of [`crate::Pipeline`], [`crate::Forwarder`] and the
//! read side must handle. Rejected *messages* are not errors: they become dead letters.

use std::path::PathBuf;

/// Errors of the ingest library.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The outbox holds `outbox_max_bytes` or more and the policy is `block`: nothing of the
    /// batch was committed; the caller must not acknowledge it and should retry later.
    #[error("outbox full ({bytes} bytes, limit {limit}): batch not committed, retry later")]
    OutboxFull {
        /// Bytes in the outbox now.
        bytes: u64,
        /// The configured limit.
        limit: u64,
    },
    /// SQLite failed (disk full, I/O error, corrupt file, ...).
    #[error("SQLite: {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The data directory could not be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer version of this library.
    #[error("database schema version {found} is newer than this build understands ({supported})")]
    SchemaTooNew {
        /// `PRAGMA user_version` found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The configuration is invalid (a bad route pattern, a zero limit, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A hot-tier chunk that does not decode (a damaged database file).
    #[error("hot tier: damaged chunk: {0}")]
    Chunk(String),

    /// The store sink could not be set up (bad URL, TLS backend, ...).
    #[error("store sink: {0}")]
    Sink(String),
    /// The message log could not be read or written.
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    /// A flush did not empty the outbox before its deadline.
    #[error("outbox not drained before the deadline: {entries} entries left")]
    FlushTimeout {
        /// Entries still queued.
        entries: u64,
    },
}

impl IngestError {
    pub(crate) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Self {
        move |source| Self::Sqlite { context, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;
