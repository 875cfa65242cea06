//! Store credentials and store errors that need a person, against a real
//! VictoriaMetrics started with `-httpAuth.username`/`-httpAuth.password`:
//! a gateway with the wrong password keeps taking readings but reports not
//! ready with the reason; restarted with the right one on the same data
//! directory, every reading lands.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::*;
use tests::{Mosquitto, VictoriaMetrics, VictoriaMetricsOptions};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_wrong_store_password_turns_the_gateway_not_ready_and_loses_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start_with(VictoriaMetricsOptions {
        basic_auth: Some(("city".into(), "right-secret".into())),
        ..VictoriaMetricsOptions::default()
    })
    .unwrap();
    let data = dir.path().join("data");

    // Wrong password, given as the URL's user info.
    let mut opts = GatewayOptions::new(&broker, "store-auth", &data);
    opts.store = Some(
        store
            .url()
            .replacen("http://", "http://city:wrong-secret@", 1),
    );
    let started = Instant::now();
    let mut gw = Gateway::start(&opts);
    let load = senml(60, 3, "auth-");
    publish(&broker, &load, 0..30, "pub-auth-1");
    wait_until(
        "the gateway reports the store's refusal",
        WAIT,
        || gw.get("/health/ready"),
        |r| r.as_ref().is_some_and(|(code, _)| *code == 503),
    );
    let (_, why) = gw.get("/health/ready").unwrap();
    assert!(
        why.contains("401") && why.contains("store"),
        "the reason names the store and its status: {why}"
    );
    let (_, health) = gw.get("/health").unwrap();
    assert!(
        health.contains("\"store_config_error\":\"HTTP 401"),
        "{health}"
    );
    assert_eq!(gw.metric("store_config_error"), Some(1.0));

    // Not ready, yet still taking readings: they wait in the outbox.
    publish(&broker, &load, 30..60, "pub-auth-2");
    wait_until(
        "300 readings in the hot tier",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 300,
    );
    assert!(
        query_u64(
            &gw.data_dir,
            "SELECT COALESCE(SUM(readings), 0) FROM outbox"
        ) >= 1,
        "the refused readings wait in the outbox"
    );
    let log = gw.log_text();
    let errors = log
        .matches("the store refuses this gateway's writes")
        .count();
    let minutes = started.elapsed().as_secs() / 60;
    assert!(
        (1..=1 + minutes as usize).contains(&errors),
        "one error, then at most one a minute: {errors} in {minutes} min"
    );
    assert!(log.contains("status") || log.contains("HTTP 401"), "{log}");
    assert!(
        !log.contains("wrong-secret"),
        "the password never reaches the log"
    );
    gw.terminate();

    // The right password, as flags, on the same data directory.
    let mut opts = GatewayOptions::new(&broker, "store-auth-fixed", &data);
    opts.store = Some(store.url());
    opts.extra = vec![
        "--store-username".into(),
        "city".into(),
        "--store-password".into(),
        "right-secret".into(),
    ];
    let mut gw = Gateway::start(&opts);
    let series = store
        .wait_for_export(r#"{__name__=~".+_value",device=~"auth-.*"}"#, WAIT, |s| {
            s.iter().map(|s| s.points().len()).sum::<usize>() == 300
        })
        .unwrap();
    assert_eq!(series.iter().map(|s| s.points().len()).sum::<usize>(), 300);
    assert_eq!(gw.get("/health/ready").unwrap().0, 200);
    assert_eq!(gw.metric("store_config_error"), Some(0.0));
    assert!(!gw.log_text().contains("right-secret"));
    gw.terminate();
}
