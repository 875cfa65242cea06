//! Many host devices on one dedicated thread, controllable from any async context.
//!
//! The link's MQTT client (rust-mqtt) lends the client a caller buffer through a raw
//! pointer, so a device's future is not `Send` and cannot go to `tokio::spawn` on a
//! multi-threaded runtime. A [`Fleet`] runs its devices on a `LocalSet` in a thread of
//! its own (one current-thread runtime, however many devices), and hands back a `Send`
//! handle to stop them gracefully or to cut them off like a power failure.

use std::{io, net::SocketAddr, string::String, thread, vec::Vec};

use tokio::sync::{oneshot, watch};

use super::{DeviceReport, HostConfig, run_device};
use crate::Sensors;

/// How the fleet's devices end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Running,
    /// Retained `offline`, DISCONNECT: the brokers see a goodbye.
    Graceful,
    /// Sockets dropped mid-session: the brokers publish each last will.
    PowerCut,
}

/// A running fleet of host devices.
#[derive(Debug)]
pub struct Fleet {
    end: watch::Sender<End>,
    reports: oneshot::Receiver<Vec<DeviceReport>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Fleet {
    /// Starts `devices` (each a config and its sensors) against `broker` on a new thread.
    pub fn spawn<S>(devices: Vec<(HostConfig, S)>, broker: SocketAddr) -> io::Result<Self>
    where
        S: Sensors + Send + 'static,
    {
        let (end, end_rx) = watch::channel(End::Running);
        let (report_tx, reports) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = thread::Builder::new()
            .name(String::from("host-fleet"))
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                let done = local.block_on(&runtime, run_all(devices, broker, end_rx));
                let _ = report_tx.send(done);
            })?;
        Ok(Self {
            end,
            reports,
            thread: Some(thread),
        })
    }

    /// Stops every device gracefully and returns their reports (those cut off by a
    /// power cut have none).
    pub async fn stop(mut self) -> Vec<DeviceReport> {
        let _ = self.end.send(End::Graceful);
        let reports = (&mut self.reports).await.unwrap_or_default();
        self.join();
        reports
    }

    /// Cuts every device off at once, as a power failure would: no goodbye, the broker
    /// publishes each device's last will when it notices.
    pub async fn power_cut(mut self) {
        let _ = self.end.send(End::PowerCut);
        let _ = (&mut self.reports).await;
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            // A device that panicked has already failed loudly on its thread.
            let _ = t.join();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Never leave devices behind: a dropped fleet powers off.
        if self.thread.is_some() {
            let _ = self.end.send(End::PowerCut);
            self.join();
        }
    }
}

async fn run_all<S: Sensors + 'static>(
    devices: Vec<(HostConfig, S)>,
    broker: SocketAddr,
    end: watch::Receiver<End>,
) -> Vec<DeviceReport> {
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|(config, sensors)| {
            let graceful = until(end.clone(), End::Graceful);
            let power_cut = until(end.clone(), End::PowerCut);
            tokio::task::spawn_local(async move {
                tokio::select! {
                    report = run_device(config, sensors, broker, graceful) => Some(report),
                    () = power_cut => None,
                }
            })
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(Some(report)) = task.await {
            reports.push(report);
        }
    }
    reports
}

/// Completes when `end` becomes `what` (or its sender is gone, for a power cut).
async fn until(mut end: watch::Receiver<End>, what: End) {
    loop {
        if *end.borrow_and_update() == what {
            return;
        }
        if end.changed().await.is_err() {
            if what == End::PowerCut {
                return;
            }
            core::future::pending::<()>().await;
        }
    }
}
