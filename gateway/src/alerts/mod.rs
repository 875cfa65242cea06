//! Alerting: rules over the hot tier and the pipeline, evaluated on a fixed interval
//! by a thread of its own, each alert (rule, labels) run through a state machine
//! (inactive -> pending -> firing -> resolved, with hysteresis), recorded in the state
//! database's `alerts` table, exported as `ALERTS{...}` on `/metrics`, and notified to
//! the log and to webhook receivers in Alertmanager's JSON shape.
//!
//! - [`config`]: the `[alerts]` table, `[[alerts.rules]]` and `[[alerts.webhooks]]`.
//! - [`state`]: the state machine.
//! - [`eval`]: what each rule observes in one read of the hot tier.
//! - [`store`]: the history (active alerts survive a restart).
//! - [`notify`]: the [`notify::Notifier`] trait, the log and webhook notifiers.
//! - [`prom`]: the `ALERTS` series.
//!
//! Ingestion never waits on alerting: the evaluator reads through its own read-only
//! connection (WAL readers take no lock the writer needs) and writes only a few small
//! rows on a state change, each webhook posts from its own thread with a bounded queue,
//! and a slow evaluation only delays the next one.

pub mod config;
pub mod eval;
pub mod notify;
pub mod prom;
pub mod state;
pub mod store;
pub mod vmalert;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use sha2::Digest;

use self::config::{AlertsConfig, Compiled, Rule};
use self::notify::{AlertEvent, EventKind, Failure, Notifier};
use self::state::{Observation, Phase, Timing, Transition};
use self::store::{Labels, Row};
use crate::api::ReadPool;
use crate::api::queries::HourCache;

const NS_PER_S: i64 = 1_000_000_000;
/// The evaluator forgets its hourly PM means this often. Late readings the applier in this
/// process commits invalidate them at once (the head's late-write count); this bounds the
/// staleness for readings written by another process (a dead-letter replay writes
/// through into chunks).
const HOURS_RESET_NS: i64 = 300 * NS_PER_S;

/// What the evaluator reads besides the hot tier.
#[derive(Debug, Clone)]
pub struct Context {
    /// The data directory (the state database).
    pub data_dir: std::path::PathBuf,
    /// The hot tier's in-memory head (same process).
    pub head: Option<ingest::hot::HotHead>,
    /// The service's health (store configuration errors).
    pub health: Option<Arc<crate::health::Health>>,
    /// The message log's positions (backlog).
    pub progress: Option<Arc<ingest::applier::Progress>>,
    /// `externalURL` of notifications.
    pub external_url: String,
    /// The store, when it is the query source (`query.source`): rules then see every
    /// gateway's data (default none: the hot tier).
    pub store: Option<crate::api::store::StoreSource>,
}

/// The running evaluator; [`Alerting::stop`] ends it.
#[derive(Debug)]
pub struct Alerting {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
    webhooks: Vec<Arc<notify::Webhook>>,
}

impl Alerting {
    /// Stops the evaluator (after the evaluation in progress) and the webhook threads.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for w in &self.webhooks {
            w.stop();
        }
    }
}

/// Starts the evaluator and the webhook threads, unless there is no rule. `extra`
/// notifiers (an MQTT publisher, a dashboard feed) get every event too.
pub fn spawn(
    cfg: &AlertsConfig,
    compiled: &Compiled,
    ctx: Context,
    extra: Vec<Arc<dyn Notifier>>,
) -> anyhow::Result<Option<Alerting>> {
    if compiled.rules.is_empty() {
        return Ok(None);
    }
    let (fail_tx, fail_rx) = flume::unbounded();
    let mut notifiers: Vec<Arc<dyn Notifier>> = vec![Arc::new(notify::LogNotifier)];
    let mut webhooks = Vec::new();
    for (i, w) in cfg.webhooks.iter().enumerate() {
        let name = w.name.clone().unwrap_or_else(|| format!("webhook-{i}"));
        let hook = Arc::new(notify::Webhook::start(
            name,
            w,
            ctx.external_url.clone(),
            fail_tx.clone(),
        )?);
        notifiers.push(hook.clone());
        webhooks.push(hook);
    }
    notifiers.extend(extra);
    let conn = ingest::store::open(
        &ctx.data_dir,
        ingest::Synchronous::Normal,
        Duration::from_secs(5),
    )?;
    let mut ev = Evaluator {
        rules: compiled.rules.clone(),
        offset_s: compiled.utc_offset_s,
        interval: Duration::from_secs(cfg.interval_s),
        repeat_ns: secs_ns(cfg.repeat_interval_s),
        max_age_ns: secs_ns(cfg.history_max_age_s),
        max_rows: cfg.history_max_rows,
        pool: ReadPool::new(ingest::store::db_path(&ctx.data_dir)).with_head(ctx.head.clone()),
        ctx,
        conn,
        notifiers,
        failures: fail_rx,
        tracked: HashMap::new(),
        gaps: HashMap::new(),
        hours: HourCache::default(),
        hours_since_ns: notify::now_ns(),
        last_prune_ns: 0,
    };
    ev.reload()?;
    tracing::info!(
        rules = ev.rules.len(),
        webhooks = webhooks.len(),
        interval_s = cfg.interval_s,
        active = ev.tracked.len(),
        "alert evaluation started"
    );
    let (stop, stop_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || ev.run(&stop_rx))?;
    Ok(Some(Alerting {
        stop,
        thread: Some(thread),
        webhooks,
    }))
}

fn secs_ns(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX / NS_PER_S) * NS_PER_S
}

/// A stable hash of the labels (Alertmanager's `fingerprint`).
pub fn fingerprint(labels: &Labels) -> String {
    let text = serde_json::to_string(labels).unwrap_or_default();
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// One alert the evaluator follows.
#[derive(Debug)]
struct Tracked {
    phase: Phase,
    row: Row,
}

struct Evaluator {
    rules: Vec<Rule>,
    offset_s: i32,
    interval: Duration,
    repeat_ns: i64,
    max_age_ns: i64,
    max_rows: u64,
    pool: ReadPool,
    ctx: Context,
    conn: rusqlite::Connection,
    notifiers: Vec<Arc<dyn Notifier>>,
    failures: flume::Receiver<Failure>,
    /// By fingerprint.
    tracked: HashMap<String, Tracked>,
    gaps: eval::GapHistory,
    hours: HourCache,
    /// When `hours` started.
    hours_since_ns: i64,
    last_prune_ns: i64,
}

impl Evaluator {
    /// Resumes the active alerts of the history whose rule still exists.
    fn reload(&mut self) -> anyhow::Result<()> {
        for row in store::active(&self.conn)? {
            if !self.rules.iter().any(|r| r.name == row.rule) {
                // The rule is gone: its alert ends.
                let mut row = row;
                row.state = "resolved".into();
                row.resolved_ns = Some(notify::now_ns());
                row.updated_ns = notify::now_ns();
                store::update(&self.conn, &row)?;
                continue;
            }
            let phase = match (row.state.as_str(), row.fired_ns) {
                ("firing", Some(fired_ns)) => Phase::Firing {
                    since_ns: row.started_ns,
                    fired_ns,
                    clear_since_ns: None,
                },
                _ => Phase::Pending {
                    since_ns: row.started_ns,
                },
            };
            prom::set(&row.fingerprint, &row.labels, phase.name());
            self.tracked
                .insert(row.fingerprint.clone(), Tracked { phase, row });
        }
        Ok(())
    }

    fn run(mut self, stop: &mpsc::Receiver<()>) {
        loop {
            let started = std::time::Instant::now();
            self.evaluate(notify::now_ns());
            let wait = self.interval.saturating_sub(started.elapsed());
            match stop.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        tracing::info!("alert evaluation stopped");
    }

    fn evaluate(&mut self, now_ns: i64) {
        let t0 = std::time::Instant::now();
        let rules = self.rules.clone();
        if now_ns - self.hours_since_ns >= HOURS_RESET_NS {
            self.hours = HourCache::default();
            self.hours_since_ns = now_ns;
        }
        let hours = &self.hours;
        let snap = self
            .pool
            .with(|hot| eval::gather(hot, self.ctx.store.as_ref(), &rules, now_ns, hours));
        let mut snap = match snap {
            Ok(s) => s,
            Err(e) => {
                metrics::counter!("alert_evaluation_failures_total").increment(1);
                tracing::warn!(error = %e, "alert evaluation: cannot read the hot tier or the store");
                return;
            }
        };
        if let Some(p) = &self.ctx.progress {
            snap.log_backlog_bytes = p.backlog_bytes();
        }
        if let Some(h) = &self.ctx.health {
            snap.store_config_error = h.store_config_error().is_some();
        }
        for rule in &rules {
            let seen = eval::observe(rule, &snap, self.offset_s, &mut self.gaps);
            let mut present = std::collections::HashSet::new();
            for s in seen {
                let mut labels = s.labels;
                labels.insert("alertname".into(), rule.name.clone());
                labels.insert("severity".into(), rule.severity.clone());
                let fp = fingerprint(&labels);
                present.insert(fp.clone());
                self.apply(rule, fp, labels, s.obs, s.summary, now_ns);
            }
            // Alerts of this rule with no observation now (no data): they clear.
            let gone: Vec<(String, f64)> = self
                .tracked
                .iter()
                .filter(|(fp, t)| t.row.rule == rule.name && !present.contains(*fp))
                .map(|(fp, t)| (fp.clone(), t.row.value.unwrap_or(0.0)))
                .collect();
            for (fp, value) in gone {
                let Some(t) = self.tracked.get(&fp) else {
                    continue;
                };
                let labels = t.row.labels.clone();
                let summary = t
                    .row
                    .annotations
                    .get("summary")
                    .cloned()
                    .unwrap_or_default();
                self.apply(rule, fp, labels, Observation::gone(value), summary, now_ns);
            }
        }
        while let Ok(f) = self.failures.try_recv() {
            if let Err(e) = store::failed(&self.conn, f.id, &f.error) {
                tracing::warn!(error = %e, "cannot record a failed alert notification");
            }
        }
        if now_ns - self.last_prune_ns > 600 * NS_PER_S {
            self.last_prune_ns = now_ns;
            if let Err(e) = store::prune(&self.conn, now_ns, self.max_age_ns, self.max_rows) {
                tracing::warn!(error = %e, "cannot prune the alert history");
            }
        }
        metrics::histogram!("alert_evaluation_seconds").record(t0.elapsed().as_secs_f64());
    }

    fn apply(
        &mut self,
        rule: &Rule,
        fp: String,
        labels: Labels,
        obs: Observation,
        summary: String,
        now_ns: i64,
    ) {
        let timing = Timing {
            for_ns: secs_ns(rule.for_s),
            resolve_for_ns: secs_ns(rule.resolve_for_s),
        };
        let mut phase = self.tracked.get(&fp).map_or(Phase::Inactive, |t| t.phase);
        let transitions = phase.step(obs, now_ns, timing);
        if phase == Phase::Inactive && transitions.is_empty() {
            return;
        }
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_owned(), summary);
        annotations.insert("threshold".to_owned(), rule.threshold_text());
        if let Some(d) = &rule.description {
            annotations.insert("description".to_owned(), d.clone());
        }
        let tracked = self.tracked.entry(fp.clone()).or_insert_with(|| Tracked {
            phase: Phase::Inactive,
            row: Row {
                id: 0,
                rule: rule.name.clone(),
                fingerprint: fp.clone(),
                labels: labels.clone(),
                annotations: annotations.clone(),
                state: "pending".into(),
                value: Some(obs.value),
                started_ns: now_ns,
                fired_ns: None,
                resolved_ns: None,
                updated_ns: now_ns,
                last_notified_ns: None,
                notifications: 0,
                notify_failures: 0,
                last_error: None,
            },
        });
        tracked.phase = phase;
        tracked.row.value = Some(obs.value);
        // The summary follows the value while active; a resolved alert keeps the last
        // breaching one's wording plus its own value.
        if !transitions.contains(&Transition::Resolved) {
            tracked.row.annotations = annotations;
        }
        let mut events = Vec::new();
        let mut changed = !transitions.is_empty();
        for tr in &transitions {
            match tr {
                Transition::Pending => {
                    tracked.row.state = "pending".into();
                    tracked.row.started_ns = now_ns;
                    tracked.row.updated_ns = now_ns;
                    match store::insert(&self.conn, &tracked.row) {
                        Ok(id) => tracked.row.id = id,
                        Err(e) => tracing::warn!(error = %e, "cannot record an alert"),
                    }
                }
                Transition::Fired => {
                    tracked.row.state = "firing".into();
                    tracked.row.fired_ns = Some(now_ns);
                    events.push(EventKind::Firing);
                }
                Transition::Cleared => {
                    if let Err(e) = store::delete(&self.conn, tracked.row.id) {
                        tracing::warn!(error = %e, "cannot delete a cleared alert");
                    }
                    changed = false;
                }
                Transition::Resolved => {
                    tracked.row.state = "resolved".into();
                    tracked.row.resolved_ns = Some(now_ns);
                    events.push(EventKind::Resolved);
                }
            }
        }
        if let Phase::Firing { .. } = phase
            && events.is_empty()
            && tracked
                .row
                .last_notified_ns
                .is_none_or(|t| now_ns - t >= self.repeat_ns)
        {
            events.push(EventKind::Repeat);
        }
        if !events.is_empty() {
            tracked.row.last_notified_ns = Some(now_ns);
            changed = true;
        }
        if changed {
            tracked.row.updated_ns = now_ns;
            if let Err(e) = store::update(&self.conn, &tracked.row) {
                tracing::warn!(error = %e, "cannot record an alert's state");
            }
        }
        for kind in events {
            let row = &tracked.row;
            let _ = store::notified(&self.conn, row.id, now_ns);
            let event = AlertEvent {
                id: row.id,
                kind,
                rule: row.rule.clone(),
                labels: row.labels.clone(),
                annotations: row.annotations.clone(),
                value: obs.value,
                threshold: Some(rule.threshold()),
                starts_ns: row.started_ns,
                fired_ns: row.fired_ns,
                ends_ns: row.resolved_ns,
                fingerprint: fp.clone(),
            };
            for n in &self.notifiers {
                n.notify(&event);
            }
        }
        match phase {
            Phase::Inactive => {
                prom::remove(&fp);
                self.tracked.remove(&fp);
            }
            p => prom::set(&fp, &labels, p.name()),
        }
    }
}
