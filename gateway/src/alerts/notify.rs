//! Where alert events go: the [`Notifier`] trait and its two built-in kinds, the log
//! ([`LogNotifier`], a `tracing` line on fire, repeat and resolve) and webhook receivers
//! ([`Webhook`], Alertmanager-shaped JSON POSTed from a thread of its own, retried with
//! backoff). Other sinks (MQTT publishing to `city/{district}/alerts`, a dashboard feed)
//! implement [`Notifier`] and are passed to [`super::spawn`]; [`MqttNotifier`] is the
//! MQTT one.
//!
//! A notifier must not block: [`Notifier::notify`] is called on the evaluator's thread
//! and should only queue. A webhook's queue is bounded (`queue`): beyond it the oldest
//! notification is dropped and counted failed.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use super::config::WebhookConfig;
use super::store::Labels;
use ingest::backoff::Backoff;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// It started firing.
    Firing,
    /// Still firing, notified again after `repeat_interval_s`.
    Repeat,
    /// It resolved.
    Resolved,
}

/// One alert event, as every notifier receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// The history row (`alerts.id`).
    pub id: i64,
    /// Fire, repeat or resolve.
    pub kind: EventKind,
    /// Rule name.
    pub rule: String,
    /// Labels (`alertname`, `severity`, `district`, `device`, `kind`, ...).
    pub labels: Labels,
    /// Annotations (`summary`, `description`).
    pub annotations: Labels,
    /// The value that caused it (or that resolved it).
    pub value: f64,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// When the condition started to hold, unix ns.
    pub starts_ns: i64,
    /// When it started firing, unix ns.
    pub fired_ns: Option<i64>,
    /// When it resolved, unix ns.
    pub ends_ns: Option<i64>,
    /// Stable hash of the labels.
    pub fingerprint: String,
}

impl AlertEvent {
    /// The alert's `district` label, if any (an MQTT notifier publishes to
    /// `city/{district}/alerts`).
    pub fn district(&self) -> Option<&str> {
        self.labels.get("district").map(String::as_str)
    }
}

/// A sink of alert events. `notify` is called on the evaluator's thread: queue, do not
/// block.
pub trait Notifier: Send + Sync + fmt::Debug {
    /// A name for logs.
    fn name(&self) -> &str;
    /// Takes one event.
    fn notify(&self, event: &AlertEvent);
}

/// A delivery that failed for good: the evaluator records it in the history row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// History row.
    pub id: i64,
    /// Receiver and error.
    pub error: String,
}

/// Logs each event with `tracing` (info when it fires or resolves).
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        "log"
    }

    fn notify(&self, e: &AlertEvent) {
        let labels = serde_json::to_string(&e.labels).unwrap_or_default();
        let summary = e.annotations.get("summary").map_or("", String::as_str);
        match e.kind {
            EventKind::Firing => tracing::info!(
                alert = %e.rule, labels = %labels, value = e.value, "alert firing: {summary}"
            ),
            EventKind::Repeat => tracing::info!(
                alert = %e.rule, labels = %labels, value = e.value, "alert still firing: {summary}"
            ),
            EventKind::Resolved => tracing::info!(
                alert = %e.rule, labels = %labels, value = e.value, "alert resolved: {summary}"
            ),
        }
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ns: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Alertmanager's "no end" for a firing alert.
const NO_END: &str = "0001-01-01T00:00:00Z";

/// The JSON body of one event in the shape of Alertmanager's webhook receiver (version 4).
pub fn alertmanager_body(e: &AlertEvent, receiver: &str, external_url: &str) -> serde_json::Value {
    let status = match e.kind {
        EventKind::Firing | EventKind::Repeat => "firing",
        EventKind::Resolved => "resolved",
    };
    let ends = e.ends_ns.map_or_else(|| NO_END.to_owned(), rfc3339);
    let alertname = e.labels.get("alertname").cloned().unwrap_or_default();
    let base = external_url.trim_end_matches('/');
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": alertname},
        "commonLabels": e.labels,
        "commonAnnotations": e.annotations,
        "externalURL": base,
        "alerts": [{
            "status": status,
            "labels": e.labels,
            "annotations": e.annotations,
            "startsAt": rfc3339(e.starts_ns),
            "endsAt": ends,
            "generatorURL": format!("{base}/api/alerts?rule={}", e.rule),
            "fingerprint": e.fingerprint,
        }],
    })
}

#[derive(Debug, Default)]
struct Queue {
    items: Mutex<VecDeque<AlertEvent>>,
    ready: Condvar,
    stop: AtomicBool,
}

/// A webhook receiver: a bounded queue and the thread that POSTs from it.
#[derive(Debug)]
pub struct Webhook {
    name: String,
    capacity: usize,
    queue: Arc<Queue>,
    failures: flume::Sender<Failure>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Webhook {
    /// Starts the receiver's thread; failures for good go to `failures`.
    pub fn start(
        name: String,
        cfg: &WebhookConfig,
        external_url: String,
        failures: flume::Sender<Failure>,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Queue::default());
        let sender = Sender {
            name: name.clone(),
            url: cfg.url.clone(),
            token: cfg.token.as_ref().map(|t| t.expose().to_owned()),
            max_attempts: cfg.max_attempts,
            retry: (
                Duration::from_millis(cfg.retry_min_ms),
                Duration::from_millis(cfg.retry_max_ms),
            ),
            external_url,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(cfg.timeout_s)))
                .http_status_as_error(false)
                .build()
                .into(),
            queue: Arc::clone(&queue),
            failures: failures.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("alert-webhook-{name}"))
            .spawn(move || sender.run())?;
        Ok(Self {
            name,
            capacity: cfg.queue,
            queue,
            failures,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread after the attempt in progress; queued notifications are lost
    /// (their rows say they were notified; a restart re-sends nothing).
    pub fn stop(&self) {
        self.queue.stop.store(true, Ordering::Release);
        self.queue.ready.notify_all();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Notifier for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn notify(&self, e: &AlertEvent) {
        let mut items = self
            .queue
            .items
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if items.len() >= self.capacity
            && let Some(old) = items.pop_front()
        {
            metrics::counter!("alert_notifications_failed_total").increment(1);
            metrics::counter!("alert_notifications_dropped_total").increment(1);
            let _ = self.failures.send(Failure {
                id: old.id,
                error: format!("{}: dropped, the queue is full", self.name),
            });
        }
        items.push_back(e.clone());
        drop(items);
        self.queue.ready.notify_one();
    }
}

/// The receiver's thread.
struct Sender {
    name: String,
    url: String,
    token: Option<String>,
    max_attempts: u32,
    retry: (Duration, Duration),
    external_url: String,
    agent: ureq::Agent,
    queue: Arc<Queue>,
    failures: flume::Sender<Failure>,
}

impl Sender {
    fn stopping(&self) -> bool {
        self.queue.stop.load(Ordering::Acquire)
    }

    fn next(&self) -> Option<AlertEvent> {
        let mut items = self
            .queue
            .items
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.stopping() {
                return None;
            }
            if let Some(e) = items.pop_front() {
                return Some(e);
            }
            items = self
                .queue
                .ready
                .wait_timeout(items, Duration::from_millis(500))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sleeps `d` unless stopped meanwhile; false if stopped.
    fn pause(&self, d: Duration) -> bool {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(
                until
                    .saturating_duration_since(std::time::Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
        !self.stopping()
    }

    fn post(&self, body: &str) -> Result<(), String> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.send(body) {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("HTTP {}", resp.status())),
            Err(e) => Err(e.to_string()),
        }
    }

    fn run(self) {
        while let Some(event) = self.next() {
            let body = alertmanager_body(&event, &self.name, &self.external_url).to_string();
            let mut backoff = Backoff::new(self.retry.0, self.retry.1);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.post(&body) {
                    Ok(()) => {
                        metrics::counter!("alert_notifications_total").increment(1);
                        break;
                    }
                    Err(why) => {
                        metrics::counter!("alert_notifications_failed_total").increment(1);
                        tracing::warn!(
                            receiver = %self.name, alert = %event.rule, attempt,
                            error = %why, "alert webhook delivery failed"
                        );
                        if attempt >= self.max_attempts {
                            let _ = self.failures.send(Failure {
                                id: event.id,
                                error: format!("{}: {why} (after {attempt} attempts)", self.name),
                            });
                            break;
                        }
                        if !self.pause(backoff.next_delay()) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

pub use ingest::message::now_ns;

/// Publishes each event as JSON ([`mqtt_body`]) to `alerts.mqtt_topic` (default
/// `city/{district}/alerts`; `alerts.mqtt_district_fallback`, default `_city`, for an
/// alert without a district), QoS 1, not retained, on the gateway's own MQTT connection.
/// Never waits: a full queue drops the message (`mqtt_publish_dropped_total`).
#[derive(Debug)]
pub struct MqttNotifier {
    publisher: crate::consumer::Publisher,
    topic: String,
    fallback: String,
}

impl MqttNotifier {
    /// A notifier publishing through `publisher` to `topic` (`{district}` replaced, by
    /// `fallback` when the alert has none).
    pub fn new(publisher: crate::consumer::Publisher, topic: String, fallback: String) -> Self {
        Self {
            publisher,
            topic,
            fallback,
        }
    }

    /// The topic of an event.
    pub fn topic_of(&self, e: &AlertEvent) -> String {
        let district = e
            .district()
            .filter(|d| !d.is_empty() && !d.contains(['/', '+', '#']))
            .unwrap_or(&self.fallback);
        crate::public::fill(&self.topic, &[("district", district)])
    }
}

/// The JSON body of an MQTT alert notification: `rule`, `state` (`firing` or
/// `resolved`), `event` (`firing`, `repeat` or `resolved`), `labels`, `value`,
/// `threshold`, `started`, `fired`, `resolved` (RFC 3339 or null), `summary`,
/// `description`, `severity`, `fingerprint`, `id`.
pub fn mqtt_body(e: &AlertEvent) -> serde_json::Value {
    let state = match e.kind {
        EventKind::Firing | EventKind::Repeat => "firing",
        EventKind::Resolved => "resolved",
    };
    json!({
        "id": e.id,
        "rule": e.rule,
        "state": state,
        "event": e.kind,
        "severity": e.labels.get("severity"),
        "labels": e.labels,
        "value": e.value,
        "threshold": e.threshold,
        "started": rfc3339(e.starts_ns),
        "fired": e.fired_ns.map(rfc3339),
        "resolved": e.ends_ns.map(rfc3339),
        "summary": e.annotations.get("summary"),
        "description": e.annotations.get("description"),
        "fingerprint": e.fingerprint,
    })
}

impl Notifier for MqttNotifier {
    fn name(&self) -> &str {
        "mqtt"
    }

    fn notify(&self, e: &AlertEvent) {
        let body = mqtt_body(e).to_string();
        if self.publisher.publish(self.topic_of(e), body, false) {
            metrics::counter!("alert_mqtt_notifications_total").increment(1);
        } else {
            metrics::counter!("alert_notifications_dropped_total").increment(1);
            tracing::warn!(alert = %e.rule, "MQTT alert notification dropped: the publish queue is full");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_alertmanagers_shape() {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "pm25-high".into());
        labels.insert("device".into(), "aq-1".into());
        let e = AlertEvent {
            id: 1,
            kind: EventKind::Resolved,
            rule: "pm25-high".into(),
            labels,
            annotations: Labels::new(),
            value: 3.0,
            threshold: Some(100.0),
            starts_ns: 1_700_000_000_000_000_000,
            fired_ns: Some(1_700_000_010_000_000_000),
            ends_ns: Some(1_700_000_060_000_000_000),
            fingerprint: "abc".into(),
        };
        let b = alertmanager_body(&e, "ops", "http://gw:8080/");
        assert_eq!(b["version"], "4");
        assert_eq!(b["status"], "resolved");
        assert_eq!(b["receiver"], "ops");
        assert_eq!(b["groupLabels"]["alertname"], "pm25-high");
        assert_eq!(b["externalURL"], "http://gw:8080");
        let a = &b["alerts"][0];
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(a["labels"]["device"], "aq-1");
        assert_eq!(a["fingerprint"], "abc");
        assert_eq!(
            a["generatorURL"],
            "http://gw:8080/api/alerts?rule=pm25-high"
        );
    }

    #[test]
    fn mqtt_notifier_publishes_to_the_district_topic() {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "pm25-high".into());
        labels.insert("severity".into(), "warning".into());
        labels.insert("district".into(), "ba-dinh".into());
        let mut annotations = Labels::new();
        annotations.insert("summary".into(), "pm25 120 > 100".into());
        let mut e = AlertEvent {
            id: 7,
            kind: EventKind::Firing,
            rule: "pm25-high".into(),
            labels,
            annotations,
            value: 120.0,
            threshold: Some(100.0),
            starts_ns: 1_700_000_000_000_000_000,
            fired_ns: Some(1_700_000_010_000_000_000),
            ends_ns: None,
            fingerprint: "abc".into(),
        };
        let (publisher, _rx) = crate::consumer::publisher(1);
        let n = MqttNotifier::new(publisher, "city/{district}/alerts".into(), "_city".into());
        assert_eq!(n.topic_of(&e), "city/ba-dinh/alerts");
        let b = mqtt_body(&e);
        assert_eq!(b["state"], "firing");
        assert_eq!(b["event"], "firing");
        assert_eq!(b["threshold"], 100.0);
        assert_eq!(b["started"], "2023-11-14T22:13:20.000Z");
        assert_eq!(b["fired"], "2023-11-14T22:13:30.000Z");
        assert!(b["resolved"].is_null());
        assert_eq!(b["summary"], "pm25 120 > 100");
        e.labels.remove("district");
        e.kind = EventKind::Repeat;
        assert_eq!(n.topic_of(&e), "city/_city/alerts");
        assert_eq!(mqtt_body(&e)["state"], "firing");
        assert_eq!(mqtt_body(&e)["event"], "repeat");
        // The queue holds one: the second is dropped, never waited for.
        n.notify(&e);
        n.notify(&e);
    }
}
