//! Read-only access to the hot tier: a small pool of read-only SQLite connections on the
//! gateway's database file, and the hot tier's in-memory head when the API runs in the
//! process that writes it. WAL mode lets these readers run while the ingest writer
//! commits; they never take a write lock, so a slow dashboard cannot stall acks.

use super::error::ApiError;
use ingest::hot::HotHead;
use ingest::query::HotRead;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Connections kept open between requests; more are opened under load and closed after.
const IDLE_CONNECTIONS: usize = 4;
/// How long a reader waits on a lock (only a checkpoint or a schema change holds one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of read-only connections on one database file.
#[derive(Debug, Clone)]
pub struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// The writer's head (same process), else each query reads the stored head.
    head: Option<HotHead>,
}

impl ReadPool {
    /// A pool on `path`. Nothing is opened until the first query, so the API can start
    /// before the ingest side has created the file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            idle: Arc::new(Mutex::new(Vec::new())),
            head: None,
        }
    }

    /// Reads the hot tier's head from `head` (the writer's, in this process) rather than
    /// from its stored rows.
    pub fn with_head(mut self, head: Option<HotHead>) -> Self {
        self.head = head;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<Connection, ApiError> {
        if !self.path.exists() {
            return Err(ApiError::Unavailable(format!(
                "{} does not exist yet",
                self.path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| ApiError::Unavailable(format!("{}: {e}", self.path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A larger page cache and memory-mapped reads keep the hot tier's upper B-tree
        // levels in memory across queries: most queries are index seeks.
        conn.execute_batch(
            "PRAGMA query_only = 1; PRAGMA cache_size = -32768; PRAGMA mmap_size = 1073741824;",
        )?;
        Ok(conn)
    }

    /// Runs `f` on a connection, synchronously (for the CLI and tests).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&HotRead<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match taken {
            Some(c) => c,
            None => self.open()?,
        };
        let out = HotRead::new(&conn, self.head.as_ref())
            .map_err(ApiError::from)
            .and_then(|hot| f(&hot));
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
        out
    }

    /// Runs `f` on a connection in tokio's blocking pool (SQLite calls block).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&HotRead<'_>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
    }
}
