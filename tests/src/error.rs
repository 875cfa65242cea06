//! The one error type of the harness: every failure names what was being done
//! and, where a server was involved, carries the tail of its log so a failing
//! test explains itself without anyone re-running it by hand.

use std::path::PathBuf;
use std::time::Duration;

/// Anything that can go wrong while starting, driving or querying a real service.
///
/// `Debug` prints the same text as `Display`: tests `unwrap()` harness results,
/// and the panic message should read "mosquitto not found at ...: install it
/// with ..." with log tails on their own lines, not an escaped struct dump.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// The server's binary is not installed. Tests fail on this, they never skip:
    /// a skipped end-to-end test is a silent hole in the suite.
    #[error("{name} not found at {}: install it with `apt-get install -y {package}`", path.display())]
    MissingBinary {
        /// Short name of the program (e.g. `mosquitto`).
        name: &'static str,
        /// Where the harness looked.
        path: PathBuf,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The server exited before it became ready (bad config, port taken, ...).
    #[error("{name} exited during startup ({status}); log tail:\n{log_tail}")]
    ExitedEarly {
        /// Which server.
        name: &'static str,
        /// Its exit status, as text.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },

    /// The server did not become ready within the bounded wait.
    #[error("{name} was not ready after {waited:?}: {detail}; log tail:\n{log_tail}")]
    NotReady {
        /// Which server.
        name: &'static str,
        /// How long the harness waited.
        waited: Duration,
        /// The last probe's failure.
        detail: String,
        /// The last lines of its log.
        log_tail: String,
    },

    /// An operation needs the server running but it was stopped (or the reverse).
    #[error("{name}: {detail}")]
    State {
        /// Which server.
        name: &'static str,
        /// What was wrong.
        detail: String,
    },

    /// An HTTP request could not be made or got an unexpected status.
    #[error("HTTP {method} {url}: {detail}")]
    Http {
        /// Request method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// Transport error or status and body.
        detail: String,
    },

    /// A response body could not be parsed.
    #[error("cannot parse {what}: {detail}; body starts with: {excerpt}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// Parser message.
        detail: String,
        /// The first bytes of the offending body.
        excerpt: String,
    },

    /// Publishing into a broker failed (connection lost, PUBACKs missing).
    #[error("MQTT publisher {client_id}: {detail}")]
    Mqtt {
        /// The publisher's client id.
        client_id: String,
        /// What went wrong.
        detail: String,
    },

    /// A bounded wait for a condition on a running service ran out.
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// The last observed state, for the failure message.
        last: String,
    },
}

impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias used throughout the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
