//! `gateway deadletters list|show|replay`: inspect the messages the pipeline
//! could not store, and re-run them through the current pipeline after a fix
//! (a new route, a wider limit). Works on the SQLite state directly, also
//! while the service runs (WAL allows a second connection).

use std::fmt::Write as _;

use anyhow::Context as _;
use ingest::deadletter::{DeadLetter, DeadLetters, ListFilter};

use crate::cli::{DeadletterAction, DeadlettersArgs};

/// Dead letters replayed per transaction.
const REPLAY_CHUNK: usize = 500;

/// Runs one `deadletters` subcommand, printing to stdout.
pub fn run(args: &DeadlettersArgs) -> anyhow::Result<()> {
    let cfg = args.load()?;
    let dir = &cfg.data_dir;
    match &args.action {
        DeadletterAction::List { reason, limit } => {
            let store = DeadLetters::open(dir)
                .with_context(|| format!("cannot open the state in {}", dir.display()))?;
            let letters = store.list(&ListFilter {
                reason: reason.clone(),
                after_id: None,
                limit: *limit,
            })?;
            println!(
                "{:>8}  {:<24}  {:<20}  {:>8}  topic",
                "id", "received (UTC)", "reason", "bytes"
            );
            for d in &letters {
                println!(
                    "{:>8}  {:<24}  {:<20}  {:>8}  {}",
                    d.id,
                    format_time(d.received_at_ns),
                    d.reason,
                    d.payload_bytes,
                    d.topic
                );
            }
            let counts = store.counts()?;
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            let by_reason: Vec<String> = counts.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            println!(
                "\n{} shown, {total} in all ({})",
                letters.len(),
                by_reason.join(", ")
            );
        }
        DeadletterAction::Show { id } => {
            let store = DeadLetters::open(dir)?;
            let d = store
                .get(*id)?
                .ok_or_else(|| anyhow::anyhow!("no dead letter with id {id}"))?;
            print!("{}", describe(&d));
        }
        DeadletterAction::Replay { ids, reason } => {
            let store = DeadLetters::open(dir)?;
            let ids: Vec<i64> = if ids.is_empty() {
                all_ids(&store, reason.clone())?
            } else {
                ids.clone()
            };
            drop(store);
            if ids.is_empty() {
                println!("nothing to replay");
                return Ok(());
            }
            let mut pipeline = crate::pipeline::open(&cfg)
                .with_context(|| format!("cannot open the pipeline in {}", dir.display()))?;
            let (mut readings, mut again) = (0usize, 0usize);
            for chunk in ids.chunks(REPLAY_CHUNK) {
                let out = pipeline
                    .replay_dead_letters(chunk)
                    .context("replay failed (nothing of this chunk changed)")?;
                readings += out.readings_committed;
                again += out.dead_letters;
            }
            println!(
                "replayed {} dead letters: {readings} readings stored, {again} dead letters again \
                 (they keep failing; see `gateway deadletters list`)",
                ids.len()
            );
        }
    }
    Ok(())
}

fn all_ids(store: &DeadLetters, reason: Option<String>) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(&ListFilter {
            reason: reason.clone(),
            after_id: after,
            limit: 1000,
        })?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        ids.extend(page.iter().map(|d| d.id));
    }
    Ok(ids)
}

/// A dead letter in full, payload as text when it is UTF-8, else hex.
pub fn describe(d: &DeadLetter) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "id:        {}", d.id);
    let _ = writeln!(
        s,
        "received:  {} ({} ns)",
        format_time(d.received_at_ns),
        d.received_at_ns
    );
    let _ = writeln!(s, "topic:     {}", d.topic);
    let _ = writeln!(s, "reason:    {}", d.reason);
    let _ = writeln!(s, "detail:    {}", d.detail.replace('\n', "\n           "));
    let _ = writeln!(
        s,
        "bytes:     {} (kept: {})",
        d.payload_bytes,
        d.payload.len()
    );
    match std::str::from_utf8(&d.payload) {
        Ok(text) => {
            let _ = writeln!(s, "payload (text):\n{text}");
        }
        Err(_) => {
            let _ = writeln!(s, "payload (hex):");
            for line in d.payload.chunks(32) {
                let hex: String = line.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(s, "{hex}");
            }
        }
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SSZ` from Unix nanoseconds (UTC).
fn format_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_767_600_000_000_000_000),
            "2026-01-05T08:00:00Z"
        );
    }
}
