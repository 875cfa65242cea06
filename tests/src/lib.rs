//! Real-service test harness: starts a real Mosquitto broker and a real
//! VictoriaMetrics on free loopback ports, each in its own temp dir, waits
//! until they are ready, and kills and reaps them when the test ends, even when
//! it panics. End-to-end tests of the pipeline live in this crate's `tests/`.
//!
//! It also runs the `gateway` binary under test ([`GatewayProcess`]) and
//! publishes QoS 1 traffic into a broker ([`publish`]).
//!
//! Other crates use it as a dev-dependency (`tests = { path = "../tests" }`).
//! The API is blocking; from an async test, starting a server blocks the
//! runtime thread for a moment, which is harmless in tests.
//!
//! ```no_run
//! use tests::{Mosquitto, VictoriaMetrics};
//!
//! let broker = Mosquitto::start()?;          // broker.port(), broker.url()
//! let store = VictoriaMetrics::start()?;     // store.url() for the InfluxDB v2 client
//! // ... run the pipeline against them ...
//! store.force_flush()?;
//! let series = store.export(r#"pm25_value{device="aq-0001"}"#)?;
//! # Ok::<(), tests::HarnessError>(())
//! ```
//!
//! A missing server binary is an error naming the Debian package to install;
//! tests fail on it rather than skip. `scripts/test.sh` installs the packages.

pub mod error;
pub mod gateway;
pub mod mosquitto;
pub mod mqtt;
pub mod net;
pub mod process;
pub mod victoria;
pub mod wait;

pub use error::{HarnessError, Result};
pub use gateway::{GatewayOptions, GatewayProcess, http_get};
pub use mosquitto::{Mosquitto, MosquittoOptions, TlsListener};
pub use mqtt::{PublishOptions, publish, publish_with};
pub use net::free_port;
pub use process::{ChildGuard, ProcUsage, Restartable, built_binary};
pub use victoria::{ExportedSeries, VictoriaMetrics, VictoriaMetricsOptions};
pub use wait::wait_until;
