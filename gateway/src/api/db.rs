//! Read-only access to the hot tier: a small pool of read-only SQLite connections on the
//! gateway's database file, and the hot tier's in-memory head when the API runs in the
//! process that writes it. WAL mode lets these readers run while the ingest writer
//! commits; they never take a write lock, so a slow dashboard cannot stall acks.
//!
//! In the service, queries run on the pool's own threads ([`ReadPool::with_workers`]), a
//! fixed number each with its connection, not on tokio's blocking pool: a burst of
//! dashboards then neither grows the process nor waits behind (or delays) other blocking
//! work, and requests beyond a bounded queue are answered 503 at once.

use super::error::ApiError;
use ingest::hot::HotHead;
use ingest::query::HotRead;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Connections kept open between requests without workers; more are opened under load
/// and closed after. With workers, one per worker.
const IDLE_CONNECTIONS: usize = 4;
/// How long a reader waits on a lock (only a checkpoint or a schema change holds one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of read-only connections on one database file.
#[derive(Debug, Clone)]
pub struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// Connections kept between queries.
    max_idle: usize,
    /// The writer's head (same process), else each query reads the stored head.
    head: Option<HotHead>,
    /// The threads that run [`ReadPool::run`]'s queries; none: tokio's blocking pool.
    workers: Option<Arc<Workers>>,
}

/// A query for a worker thread.
type Job = Box<dyn FnOnce() + Send>;

/// The pool's threads: they take queries from a bounded queue and end when the last
/// [`ReadPool`] clone (and so the queue's sender) is dropped.
#[derive(Debug)]
struct Workers {
    jobs: flume::Sender<Job>,
}

impl Workers {
    fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, rx) = flume::bounded::<Job>(queue.max(1));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("api-read-{i}"))
                .spawn(move || {
                    lower_priority();
                    for job in rx.iter() {
                        // A panicking query fails its own request (its answer channel
                        // closes), not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Self { jobs })
    }
}

/// The nice value the query threads run at (the rest of the gateway keeps its own, 0 by
/// default).
pub const QUERY_NICE: i32 = 10;

/// Sets the calling thread's nice value to [`QUERY_NICE`] (on Linux, `setpriority` on a
/// thread id applies to that thread only): when the CPUs are busy, the log writer, the
/// applier and the MQTT loop run first, so dashboard queries slow down before
/// acknowledgements do. A refusal (a sandbox) is logged at debug level and ignored.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), QUERY_NICE) {
        tracing::debug!(error = %e, "cannot lower the API query thread's priority");
    }
}

impl ReadPool {
    /// A pool on `path`. Nothing is opened until the first query, so the API can start
    /// before the ingest side has created the file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            idle: Arc::new(Mutex::new(Vec::new())),
            max_idle: IDLE_CONNECTIONS,
            head: None,
            workers: None,
        }
    }

    /// Runs [`ReadPool::run`]'s queries on `threads` threads of its own, each keeping a
    /// connection, with at most `queue` queries waiting for one; a query beyond that is
    /// refused with [`ApiError::Busy`] (HTTP 503).
    pub fn with_workers(mut self, threads: usize, queue: usize) -> std::io::Result<Self> {
        self.workers = Some(Arc::new(Workers::start(threads, queue)?));
        self.max_idle = threads.max(1);
        Ok(self)
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
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        out
    }

    /// Runs `f` on a connection on the pool's threads (or, without workers, tokio's
    /// blocking pool): SQLite calls block.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&HotRead<'_>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        if self.workers.is_none() {
            let pool = self.clone();
            return tokio::task::spawn_blocking(move || pool.with(f))
                .await
                .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?;
        }
        self.submit(f)?
            .await
            .map_err(|_| ApiError::Internal("the query failed (its thread panicked)".into()))?
    }

    /// Queues `f` for the worker threads: the receiver of its answer, or
    /// [`ApiError::Busy`] when the queue is full.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&HotRead<'_>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<T, ApiError>>, ApiError> {
        let Some(workers) = &self.workers else {
            return Err(ApiError::Internal("no query threads".into()));
        };
        let pool = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The client went away while the query waited: skip it.
            if !tx.is_closed() {
                let _ = tx.send(pool.with(f));
            }
        });
        enqueue(workers, job)?;
        Ok(rx)
    }
}

/// The store's queries on threads of their own, bounded like [`ReadPool`]'s: at most
/// `threads` at once (each an HTTP request to the store), `queue` waiting, the rest
/// refused with [`ApiError::Busy`].
#[derive(Debug, Clone)]
pub struct StorePool {
    source: super::store::StoreSource,
    workers: Arc<Workers>,
}

impl StorePool {
    /// Starts the threads.
    pub fn new(
        source: super::store::StoreSource,
        threads: usize,
        queue: usize,
    ) -> std::io::Result<Self> {
        Ok(Self {
            source,
            workers: Arc::new(Workers::start(threads, queue)?),
        })
    }

    /// The store source itself (for synchronous callers).
    pub fn source(&self) -> &super::store::StoreSource {
        &self.source
    }

    /// Runs `f` against the store on one of the threads.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&super::store::StoreSource) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let source = self.source.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let _ = tx.send(f(&source));
            }
        });
        enqueue(&self.workers, job)?;
        rx.await
            .map_err(|_| ApiError::Internal("the query failed (its thread panicked)".into()))?
    }
}

/// Queues `job` for `workers`, or refuses it when the queue is full.
fn enqueue(workers: &Workers, job: Job) -> Result<(), ApiError> {
    match workers.jobs.try_send(job) {
        Ok(()) => Ok(()),
        Err(flume::TrySendError::Full(_)) => {
            metrics::counter!("api_queries_refused_total").increment(1);
            Err(ApiError::Busy)
        }
        Err(flume::TrySendError::Disconnected(_)) => {
            Err(ApiError::Internal("the query threads are gone".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_full_queue_is_refused_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        ingest::store::open(
            dir.path(),
            ingest::Synchronous::Normal,
            Duration::from_secs(5),
        )
        .unwrap();
        let pool = ReadPool::new(ingest::store::db_path(dir.path()))
            .with_workers(1, 1)
            .unwrap();
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        // The only thread takes the first query and holds it.
        let first = pool
            .submit(move |_| {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(1)
            })
            .unwrap();
        started.recv().unwrap();
        // One more waits in the queue; the next is refused at once.
        let second = pool.submit(|_| Ok(2)).unwrap();
        assert!(matches!(pool.submit(|_| Ok(3)), Err(ApiError::Busy)));
        release.send(()).unwrap();
        assert_eq!(first.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(second.blocking_recv().unwrap().unwrap(), 2);
        // Room again.
        let third = pool.submit(|_| Ok(3)).unwrap();
        assert_eq!(third.blocking_recv().unwrap().unwrap(), 3);
        assert_eq!(
            ApiError::Busy.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
