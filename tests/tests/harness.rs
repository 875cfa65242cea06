//! Self-tests of the harness against the real servers: each starts, answers,
//! stops and restarts where the tests of the pipeline will need it to.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use tests::{ChildGuard, HarnessError, Mosquitto, MosquittoOptions, TlsListener, VictoriaMetrics};

/// Bound on every wait for an MQTT event; only a broken setup reaches it.
const MQTT_WAIT: Duration = Duration::from_secs(30);

fn mqtt_client(broker: &Mosquitto, id: &str) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, broker.host(), broker.port());
    opts.set_keep_alive(Duration::from_secs(10));
    AsyncClient::new(opts, 16)
}

/// A client with a persistent session: it survives disconnects (and broker
/// restarts, through the broker's persistence file).
fn persistent_client(broker: &Mosquitto, id: &str) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, broker.host(), broker.port());
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(3600));
    AsyncClient::new(opts, 16)
}

/// Polls the event loop until `pick` returns something.
async fn next_matching<T>(
    events: &mut EventLoop,
    mut pick: impl FnMut(&Packet) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(MQTT_WAIT, async {
        loop {
            if let Event::Incoming(packet) = events.poll().await?
                && let Some(found) = pick(&packet)
            {
                return Ok::<T, ConnectionError>(found);
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no matching MQTT packet within {MQTT_WAIT:?}"))?
    .map_err(anyhow::Error::from)
}

fn publish_of(packet: &Packet) -> Option<(String, Vec<u8>)> {
    match packet {
        Packet::Publish(p) => Some((
            String::from_utf8_lossy(&p.topic).into_owned(),
            p.payload.to_vec(),
        )),
        _ => None,
    }
}

fn is_suback(packet: &Packet) -> Option<()> {
    matches!(packet, Packet::SubAck(_)).then_some(())
}

fn is_puback(packet: &Packet) -> Option<()> {
    matches!(packet, Packet::PubAck(_)).then_some(())
}

#[test]
fn mosquitto_starts_listens_and_stops() {
    let mut broker = Mosquitto::start().unwrap();
    assert_ne!(broker.port(), 0);
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));
    assert!(broker.is_running());
    assert!(tests::net::tcp_accepts(broker.port()).is_ok());
    assert!(broker.dir().join("mosquitto.conf").is_file());

    broker.stop().unwrap();
    assert!(!broker.is_running());
    assert!(tests::net::tcp_accepts(broker.port()).is_err());
    let log = broker.log_tail(100);
    assert!(log.contains("mosquitto version"), "log: {log}");
}

#[tokio::test]
async fn mosquitto_round_trips_a_qos1_publish() {
    let broker = Mosquitto::start().unwrap();
    let (sub, mut sub_events) = mqtt_client(&broker, "harness-sub");
    sub.subscribe("city/+/airquality/+/up", QoS::AtLeastOnce)
        .await
        .unwrap();
    next_matching(&mut sub_events, is_suback).await.unwrap();

    let (publisher, mut pub_events) = mqtt_client(&broker, "harness-pub");
    let topic = "city/ba-dinh/airquality/aq-0042/up";
    publisher
        .publish(topic, QoS::AtLeastOnce, false, b"hello".to_vec())
        .await
        .unwrap();
    next_matching(&mut pub_events, is_puback).await.unwrap();

    let (got_topic, payload) = next_matching(&mut sub_events, publish_of).await.unwrap();
    assert_eq!(got_topic, topic);
    assert_eq!(payload, b"hello");
}

#[tokio::test]
async fn mosquitto_restart_keeps_port_and_persistent_sessions() {
    let mut broker = Mosquitto::start().unwrap();
    let port = broker.port();

    // A persistent subscriber registers, then goes away.
    let (sub, mut sub_events) = persistent_client(&broker, "harness-persistent");
    sub.subscribe("city/#", QoS::AtLeastOnce).await.unwrap();
    next_matching(&mut sub_events, is_suback).await.unwrap();
    sub.disconnect().await.unwrap();
    drop(sub_events);

    // While it is away QoS 1 messages are queued for it: more than Mosquitto's
    // stock limit of 1000 queued messages, which the harness lifts.
    const QUEUED: usize = 2500;
    let (publisher, mut pub_events) = mqtt_client(&broker, "harness-pub");
    let publishing = tokio::spawn(async move {
        for i in 0..QUEUED {
            publisher
                .publish(
                    "city/hoan-kiem/noise/nz-7/up",
                    QoS::AtLeastOnce,
                    false,
                    i.to_string().into_bytes(),
                )
                .await
                .unwrap();
        }
        publisher
    });
    for _ in 0..QUEUED {
        next_matching(&mut pub_events, is_puback).await.unwrap();
    }
    drop(publishing.await.unwrap());
    drop(pub_events);

    broker.stop().unwrap();
    broker.start_again().unwrap();
    assert_eq!(broker.port(), port);

    // The session and every queued message survived the restart, in order.
    let (_sub, mut sub_events) = persistent_client(&broker, "harness-persistent");
    let session_present = next_matching(&mut sub_events, |p| match p {
        Packet::ConnAck(ack) => Some(ack.session_present),
        _ => None,
    })
    .await
    .unwrap();
    assert!(session_present, "session lost across restart");
    for i in 0..QUEUED {
        let (topic, payload) = next_matching(&mut sub_events, publish_of).await.unwrap();
        assert_eq!(topic, "city/hoan-kiem/noise/nz-7/up");
        assert_eq!(String::from_utf8_lossy(&payload), i.to_string());
    }
}

#[tokio::test]
async fn mosquitto_kill_drops_connections_and_start_again_recovers() {
    let mut broker = Mosquitto::start().unwrap();
    broker.kill().unwrap();
    assert!(!broker.is_running());
    assert!(tests::net::tcp_accepts(broker.port()).is_err());
    broker.start_again().unwrap();
    assert!(broker.is_running());
    let (client, mut events) = mqtt_client(&broker, "after-crash");
    client.subscribe("x", QoS::AtMostOnce).await.unwrap();
    next_matching(&mut events, is_suback).await.unwrap();
}

#[tokio::test]
async fn mosquitto_password_file_admits_users_and_rejects_anonymous() {
    let broker = Mosquitto::start_with(
        MosquittoOptions::default()
            .with_user("gw", "s3cret")
            .deny_anonymous(),
    )
    .unwrap();

    let mut opts = MqttOptions::new("with-creds", broker.host(), broker.port());
    opts.set_credentials("gw", "s3cret");
    let (client, mut events) = AsyncClient::new(opts, 16);
    client.subscribe("x", QoS::AtLeastOnce).await.unwrap();
    next_matching(&mut events, is_suback).await.unwrap();

    for (id, creds) in [("anon", None), ("wrong", Some(("gw", "nope")))] {
        let mut opts = MqttOptions::new(id, broker.host(), broker.port());
        if let Some((u, p)) = creds {
            opts.set_credentials(u, p);
        }
        let (_client, mut events) = AsyncClient::new(opts, 16);
        let outcome = tokio::time::timeout(MQTT_WAIT, events.poll())
            .await
            .expect("broker did not answer the CONNECT");
        match outcome {
            Err(ConnectionError::ConnectionRefused(code)) => assert!(
                matches!(
                    code,
                    ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
                ),
                "{id}: refused with {code:?}"
            ),
            other => panic!("{id}: expected a refused connection, got {other:?}"),
        }
    }
}

#[test]
fn mosquitto_opens_a_tls_listener_with_given_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl not found: install it with `apt-get install -y openssl`");
    assert!(
        status.success(),
        "openssl could not make a test certificate"
    );

    let broker = Mosquitto::start_with(
        MosquittoOptions::default().with_tls(TlsListener::new(&cert, &cert, &key)),
    )
    .unwrap();
    let tls_port = broker.tls_port().expect("a TLS port");
    assert_ne!(tls_port, broker.port());
    assert!(tests::net::tcp_accepts(tls_port).is_ok());
    assert!(tests::net::tcp_accepts(broker.port()).is_ok());
}

#[test]
fn missing_binary_error_names_the_package() {
    let err = tests::process::require_binary(
        "mosquitto",
        "/nonexistent/sbin/mosquitto",
        "mosquitto",
        "HARNESS_SELF_TEST_UNSET_VARIABLE",
    )
    .unwrap_err();
    assert!(matches!(err, HarnessError::MissingBinary { .. }));
    assert_eq!(
        err.to_string(),
        "mosquitto not found at /nonexistent/sbin/mosquitto: install it with `apt-get install -y mosquitto`"
    );
}

#[test]
fn child_guard_kills_and_reaps_on_drop() {
    let child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let guard = ChildGuard::new("sleep", child);
    let pid = guard.id().unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    drop(guard);
    // Reaped means no zombie either: the pid is gone from /proc.
    assert!(!proc_dir.exists(), "process {pid} still present after drop");
}

#[test]
fn child_guard_terminate_uses_sigterm_first() {
    let child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new("sleep", child);
    let status = guard.terminate(Duration::from_secs(10)).unwrap().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status}");
    assert!(guard.id().is_none());
}

#[test]
fn victoria_metrics_stores_line_protocol_and_exports_it() {
    let vm = VictoriaMetrics::start().unwrap();
    assert_eq!(vm.url(), format!("http://127.0.0.1:{}", vm.port()));
    vm.write_line_protocol(concat!(
        "pm25,device=aq-0001,district=hoan-kiem value=12.5 1700000000000000000\n",
        "pm25,device=aq-0001,district=hoan-kiem value=13.25 1700000060000000000\n",
        "pm25,device=aq-0002,district=ba-dinh value=40 1700000000000000000\n",
    ))
    .unwrap();
    vm.force_flush().unwrap();

    let series = vm.export(r#"pm25_value{device="aq-0001"}"#).unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].name(), "pm25_value");
    assert_eq!(series[0].label("district"), Some("hoan-kiem"));
    assert_eq!(
        series[0].points(),
        vec![(1_700_000_000_000, 12.5), (1_700_000_060_000, 13.25)]
    );

    let all = vm.export(r#"{__name__=~"pm25.*"}"#).unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn victoria_metrics_restart_keeps_port_and_data_and_refuses_writes_while_down() {
    let mut vm = VictoriaMetrics::start().unwrap();
    let port = vm.port();
    vm.write_line_protocol("uptime,device=wifi-1 value=42 1600000000000000000\n")
        .unwrap();
    vm.force_flush().unwrap();

    vm.stop().unwrap();
    assert!(!vm.is_running());
    let err = vm
        .write_line_protocol("uptime,device=wifi-1 value=43 1600000001000000000\n")
        .unwrap_err();
    assert!(matches!(err, HarnessError::Http { .. }), "{err}");

    vm.start_again().unwrap();
    assert_eq!(vm.port(), port);
    let series = vm
        .wait_for_export(
            r#"uptime_value{device="wifi-1"}"#,
            Duration::from_secs(30),
            |s| !s.is_empty(),
        )
        .unwrap();
    assert_eq!(series[0].points(), vec![(1_600_000_000_000, 42.0)]);
}

#[test]
fn victoria_metrics_wait_for_export_times_out_with_what_it_saw() {
    let vm = VictoriaMetrics::start().unwrap();
    let err = vm
        .wait_for_export("never_written_value", Duration::from_millis(300), |s| {
            !s.is_empty()
        })
        .unwrap_err();
    assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
}

#[test]
fn mosquitto_that_cannot_start_reports_its_log() {
    let options = MosquittoOptions {
        extra_config: vec!["no_such_option_for_the_test 1".into()],
        ..MosquittoOptions::default()
    };
    let err = Mosquitto::start_with(options).unwrap_err();
    assert!(matches!(err, HarnessError::ExitedEarly { .. }), "{err}");
    assert!(
        err.to_string().contains("no_such_option_for_the_test"),
        "log tail missing from: {err}"
    );
}
