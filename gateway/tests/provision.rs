//! `gateway devices provision` against a real Mosquitto: the real binary
//! writes the password and ACL files from a small registry, a real broker
//! loads them, and real MQTT clients find that each device can publish its
//! own topics only, that the gateway's account reads them (through a shared
//! subscription, as `--share-group` does), and that bad credentials are
//! refused. Mosquitto (and mosquitto_passwd) missing is a failure naming
//! `apt-get install mosquitto`, not a skip.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[allow(unused_imports)] // the helpers re-export more than this file uses
mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use tests::{Mosquitto, MosquittoOptions};

/// Upper bound on waits for the broker; a hang guard, not a timing assertion.
const WAIT: Duration = Duration::from_secs(30);

const GW_PASS: &str = "gw-Secret-1";
const AQ_PASS: &str = "aq-Secret-2";
const TASMOTA_PASS: &str = "tasmota-Secret-3";
const UL_PASS: &str = "ul-Secret-4";
const ESP_PASS: &str = "esp-Secret-5";

/// A `$7$` hash written by Debian's own mosquitto_passwd, for the ESPHome
/// device's `password_hash`.
fn mosquitto_passwd_hash(dir: &Path, user: &str, password: &str) -> String {
    let tool = std::env::var_os(tests::mosquitto::MOSQUITTO_PASSWD_BIN_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tests::mosquitto::MOSQUITTO_PASSWD_BIN.into());
    assert!(
        tool.is_file(),
        "mosquitto_passwd not found at {}: install it with `apt-get install mosquitto` \
         (or set {})",
        tool.display(),
        tests::mosquitto::MOSQUITTO_PASSWD_BIN_ENV
    );
    let file = dir.join("from-mosquitto_passwd");
    let out = Command::new(&tool)
        .args(["-b", "-c"])
        .arg(&file)
        .args([user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let hash = text
        .trim()
        .strip_prefix(&format!("{user}:"))
        .unwrap()
        .to_owned();
    assert!(hash.starts_with("$7$"), "{hash}");
    hash
}

fn registry(esp_hash: &str) -> String {
    format!(
        r#"[gateway]
username = "gateway"
password = "{GW_PASS}"

[[device]]
id = "aq-0001"
kind = "airquality"
district = "ba-dinh"
format = "senml"
password = "{AQ_PASS}"

[[device]]
id = "tasmota-a1"
kind = "weather"
district = "tay-ho"
format = "tasmota"
username = "tasmota-user"
password = "{TASMOTA_PASS}"

[[device]]
id = "ul-9"
kind = "noise"
district = "dong-da"
format = "ultralight"
password = "{UL_PASS}"
apikey = "Key123"

[[device]]
id = "node-7"
kind = "weather"
district = "cau-giay"
format = "esphome"
password_hash = "{esp_hash}"
"#
    )
}

/// What [`provision_registry`] made.
struct Provisioning {
    esp_hash: String,
    reg: std::path::PathBuf,
    auth: std::path::PathBuf,
    out: std::process::Output,
}

/// Writes the test registry into `dir` and runs the real `gateway devices
/// provision` on it, into `dir/mosquitto`.
fn provision_registry(dir: &Path) -> Provisioning {
    let esp_hash = mosquitto_passwd_hash(dir, "node-7", ESP_PASS);
    let reg = dir.join("devices.toml");
    std::fs::write(&reg, registry(&esp_hash)).unwrap();
    let auth = dir.join("mosquitto");
    let out = Command::new(common::gateway_bin())
        .args(["devices", "provision", "--registry"])
        .arg(&reg)
        .arg("--mosquitto-dir")
        .arg(&auth)
        .output()
        .unwrap();
    Provisioning {
        esp_hash,
        reg,
        auth,
        out,
    }
}

/// Connects with MQTT 5 and waits for the CONNACK; the error is the
/// refusal.
async fn connect(
    broker: &Mosquitto,
    id: &str,
    creds: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    connect_at(broker.host(), broker.port(), id, creds).await
}

/// [`connect`] to any broker address.
async fn connect_at(
    host: &str,
    port: u16,
    id: &str,
    creds: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let mut o = MqttOptions::new(id, host, port);
    o.set_clean_start(true);
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(o, 100);
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await.unwrap()? {
            Event::Incoming(Packet::ConnAck(_)) => return Ok((client, events)),
            _ => continue,
        }
    }
}

/// What the broker answered to one QoS 1 publish.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A PUBACK with this reason (MQTT 5).
    Acked(PubAckReason),
    /// A PUBACK (MQTT 3.1.1 has no reason codes).
    AckedV311,
    /// The broker closed the connection instead. Mosquitto 2.0.11 (Debian
    /// 12) does this to an MQTT 5 client whose QoS 1 publish its ACL denies;
    /// later versions answer PUBACK 0x87 (Not authorized).
    Disconnected,
}

/// Connects as a device with MQTT 5 (a fresh connection each time, since a
/// refusal may close it), publishes one QoS 1 message and returns the answer.
async fn publish_v5(
    broker: &Mosquitto,
    user: &str,
    pass: &str,
    topic: &str,
    payload: &str,
) -> Answer {
    let (client, mut events) = connect(broker, user, Some((user, pass))).await.unwrap();
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await.unwrap() {
            Ok(Event::Incoming(Packet::PubAck(ack))) => return Answer::Acked(ack.reason),
            Ok(_) => {}
            Err(_) => return Answer::Disconnected,
        }
    }
}

/// The same over MQTT 3.1.1, where the broker drops an unauthorised publish
/// silently (PUBACK all the same) or closes the connection.
async fn publish_v311(
    broker: &Mosquitto,
    user: &str,
    pass: &str,
    topic: &str,
    payload: &str,
) -> Answer {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let mut o = MqttOptions::new(user, broker.host(), broker.port());
    o.set_credentials(user, pass);
    let (client, mut events) = AsyncClient::new(o, 100);
    client
        .publish(
            topic,
            rumqttc::QoS::AtLeastOnce,
            false,
            payload.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await.unwrap() {
            Ok(Event::Incoming(Packet::PubAck(_))) => return Answer::AckedV311,
            Ok(_) => {}
            Err(_) => return Answer::Disconnected,
        }
    }
}

fn refused(answer: &Answer) -> bool {
    matches!(
        answer,
        Answer::Acked(PubAckReason::NotAuthorized) | Answer::Disconnected
    )
}

/// Subscribes to every filter and returns each SUBACK's first reason.
async fn subscribe_all(
    client: &AsyncClient,
    events: &mut EventLoop,
    filters: &[String],
) -> Vec<SubscribeReasonCode> {
    let mut codes = Vec::new();
    for f in filters {
        client.subscribe(f.clone(), QoS::AtLeastOnce).await.unwrap();
        loop {
            let ev = tokio::time::timeout(WAIT, events.poll())
                .await
                .unwrap()
                .unwrap();
            if let Event::Incoming(Packet::SubAck(ack)) = ev {
                codes.push(ack.return_codes[0]);
                break;
            }
        }
    }
    codes
}

/// Receives publishes until one has `last` as its payload; returns
/// (topic, payload) of all of them in arrival order.
async fn receive_until(events: &mut EventLoop, last: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, events.poll())
            .await
            .unwrap()
            .unwrap();
        if let Event::Incoming(Packet::Publish(p)) = ev {
            let item = (
                String::from_utf8_lossy(&p.topic).into_owned(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            );
            let done = item.1 == last;
            got.push(item);
            if done {
                return got;
            }
        }
    }
}

#[test]
fn provisioned_devices_publish_only_their_own_topics() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let Provisioning {
        esp_hash,
        auth,
        out,
        ..
    } = provision_registry(dir.path());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("provisioned 4 device(s)"), "{printed}");
    for secret in [
        GW_PASS,
        AQ_PASS,
        TASMOTA_PASS,
        UL_PASS,
        ESP_PASS,
        esp_hash.as_str(),
    ] {
        assert!(
            !printed.contains(secret),
            "a secret was printed:\n{printed}"
        );
    }
    let passwd = auth.join("passwd");
    let acl = auth.join("acl");
    let mode = std::fs::metadata(&passwd).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "passwd mode {mode:o}");
    let passwd_text = std::fs::read_to_string(&passwd).unwrap();
    let users: Vec<&str> = passwd_text
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        users,
        ["gateway", "aq-0001", "tasmota-user", "ul-9", "node-7"]
    );
    assert!(
        !passwd_text.contains(AQ_PASS),
        "plain password in the passwd file"
    );
    assert!(passwd_text.contains(&format!("node-7:{esp_hash}\n")));
    let acl_text = std::fs::read_to_string(&acl).unwrap();
    for line in [
        "user gateway\ntopic read city/+/+/+/up\n",
        "topic read tele/+/SENSOR\n",
        // The gateway publishes the public AQI feed and its alerts.
        "topic write city/+/aqi\ntopic write city/+/+/+/aqi\ntopic write city/+/alerts\n",
        "user aq-0001\ntopic write city/ba-dinh/airquality/aq-0001/up\n",
        "topic write city/ba-dinh/airquality/aq-0001/status\n",
        "user tasmota-user\ntopic write tele/tasmota-a1/SENSOR\n",
        "user ul-9\ntopic write /Key123/ul-9/attrs\ntopic write /ul/Key123/ul-9/attrs\n",
        "user node-7\ntopic write node-7/sensor/+/state\n",
    ] {
        assert!(acl_text.contains(line), "acl lacks {line:?}:\n{acl_text}");
    }
    // Devices read nothing: the only read rules are the gateway's. (Mosquitto
    // grants a device's SUBSCRIBE anyway and checks read access per message.)
    let reads = acl_text
        .lines()
        .filter(|l| l.starts_with("topic read"))
        .count();
    let gateway_block = acl_text
        .split("\n\n")
        .find(|b| b.contains("user gateway\n"))
        .unwrap();
    assert_eq!(
        reads,
        gateway_block.matches("topic read").count(),
        "{acl_text}"
    );
    assert!(!acl_text.contains("readwrite"), "{acl_text}");

    let broker = Mosquitto::start_with(
        MosquittoOptions::default()
            .deny_anonymous()
            .with_password_file(&passwd)
            .with_acl_file(&acl)
            .with_config_line("log_type debug"),
    )
    .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The gateway's account, through shared subscriptions as `--share-group` makes them.
        let (gw, mut gw_events) = connect(&broker, "gw-sub", Some(("gateway", GW_PASS)))
            .await
            .unwrap();
        let filters: Vec<String> = ingest::route::subscription_filters(&ingest::default_routes())
            .into_iter()
            .map(|f| format!("$share/gateways/{f}"))
            .collect();
        let codes = subscribe_all(&gw, &mut gw_events, &filters).await;
        assert!(
            codes
                .iter()
                .all(|c| *c == SubscribeReasonCode::Success(QoS::AtLeastOnce)),
            "gateway subscriptions {filters:?}: {codes:?}"
        );

        // MQTT 5 devices: another device's topic is refused (PUBACK 0x87, or
        // the connection closed), their own topics are accepted.
        for (user, pass, topic, payload) in [
            ("aq-0001", AQ_PASS, "tele/tasmota-a1/SENSOR", "spoof-1"),
            (
                "aq-0001",
                AQ_PASS,
                "city/ba-dinh/airquality/ul-9/up",
                "spoof-2",
            ),
            (
                "aq-0001",
                AQ_PASS,
                "city/tay-ho/airquality/aq-0001/up",
                "spoof-3",
            ),
            ("ul-9", UL_PASS, "/Key123/aq-0001/attrs", "spoof-4"),
            ("node-7", ESP_PASS, "node-8/sensor/temp/state", "spoof-5"),
        ] {
            let answer = publish_v5(&broker, user, pass, topic, payload).await;
            assert!(refused(&answer), "{user} publishing {topic}: {answer:?}");
        }
        for (user, pass, topic, payload) in [
            (
                "aq-0001",
                AQ_PASS,
                "city/ba-dinh/airquality/aq-0001/up",
                "aq-own",
            ),
            ("ul-9", UL_PASS, "/ul/Key123/ul-9/attrs", "ul-own"),
            // The account whose hash mosquitto_passwd wrote.
            ("node-7", ESP_PASS, "node-7/sensor/temp/state", "esp-own"),
        ] {
            let answer = publish_v5(&broker, user, pass, topic, payload).await;
            assert_eq!(
                answer,
                Answer::Acked(PubAckReason::Success),
                "{user} publishing {topic}"
            );
        }
        // MQTT 3.1.1 device (Tasmota).
        for (topic, payload) in [
            ("/ul/Key123/ul-9/attrs", "spoof-6"),
            ("city/tay-ho/weather/tasmota-a1/up", "spoof-7"),
        ] {
            let answer = publish_v311(&broker, "tasmota-user", TASMOTA_PASS, topic, payload).await;
            assert!(
                matches!(answer, Answer::AckedV311 | Answer::Disconnected),
                "{answer:?}"
            );
        }
        let answer = publish_v311(
            &broker,
            "tasmota-user",
            TASMOTA_PASS,
            "tele/tasmota-a1/SENSOR",
            "tasmota-own",
        )
        .await;
        assert_eq!(answer, Answer::AckedV311);

        // The subscriber got the authorised messages, in publish order, and
        // none of the refused ones (each was published before the last one).
        let got = receive_until(&mut gw_events, "tasmota-own").await;
        let payloads: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(
            payloads,
            ["aq-own", "ul-own", "esp-own", "tasmota-own"],
            "{got:?}"
        );
        assert_eq!(got[3].0, "tele/tasmota-a1/SENSOR");
    });

    // Refused at CONNACK: a bad password, an unknown user, no credentials.
    rt.block_on(async {
        for (id, creds) in [
            ("bad-password", Some(("aq-0001", "wrong"))),
            ("unknown-user", Some(("nobody", AQ_PASS))),
            ("anonymous", None),
        ] {
            match connect(&broker, id, creds).await {
                Err(ConnectionError::ConnectionRefused(code)) => {
                    eprintln!("{id}: refused with {code:?}");
                }
                Err(other) => panic!("{id}: expected a CONNACK refusal, got {other:?}"),
                Ok(_) => panic!("{id}: connected"),
            }
        }
    });
}

#[test]
fn a_bad_registry_fails_naming_the_entry_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("devices.toml");
    std::fs::write(
        &reg,
        "[gateway]\nusername = \"gw\"\npassword = \"x\"\n\
         [[device]]\nid = \"a\"\nkind = \"noise\"\ndistrict = \"d\"\nformat = \"senml\"\npassword = \"p\"\n\
         [[device]]\nid = \"b\"\nkind = \"noise\"\ndistrict = \"Bad District\"\nformat = \"senml\"\npassword = \"p\"\n",
    )
    .unwrap();
    let auth = dir.path().join("out");
    let out = Command::new(common::gateway_bin())
        .args(["devices", "provision", "--registry"])
        .arg(&reg)
        .arg("--mosquitto-dir")
        .arg(&auth)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("device[1].district"), "{err}");
    assert!(!auth.join("passwd").exists() && !auth.join("acl").exists());
}

/// The whole chain on one box: `gateway run` with its bundled broker using
/// the provisioned files and the same registry in the pipeline. A device
/// writes its own topic and its readings land (a foreign device with the
/// registry's district); another device's topic, and anonymous or wrong
/// credentials, get nothing in.
#[test]
fn the_bundled_broker_with_provisioned_accounts_takes_only_each_devices_own_topics() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let Provisioning { reg, auth, out, .. } = provision_registry(dir.path());
    assert!(out.status.success(), "{out:?}");
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!("[ingest]\nregistry = \"{}\"\n", reg.display()),
    )
    .unwrap();
    let port = tests::free_port().unwrap();
    let data = dir.path().join("data");
    let opts = common::GatewayOptions {
        extra: vec![
            "--config".into(),
            cfg.display().to_string(),
            "--embedded-broker".into(),
            format!("127.0.0.1:{port}"),
            "--broker-password-file".into(),
            auth.join("passwd").display().to_string(),
            "--broker-acl-file".into(),
            auth.join("acl").display().to_string(),
            "--mqtt-username".into(),
            "gateway".into(),
            "--mqtt-password".into(),
            GW_PASS.into(),
        ],
        ..common::GatewayOptions::without_broker("gw-bundled", &data)
    };
    let gw = common::Gateway::start(&opts);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(
            connect_at("127.0.0.1", port, "anon", None).await.is_err(),
            "anonymous clients are refused"
        );
        assert!(
            connect_at(
                "127.0.0.1",
                port,
                "aq-0001",
                Some(("aq-0001", "wrong-password"))
            )
            .await
            .is_err(),
            "a wrong password is refused"
        );
        let (client, mut events) =
            connect_at("127.0.0.1", port, "aq-0001", Some(("aq-0001", AQ_PASS)))
                .await
                .unwrap();
        let poll = tokio::spawn(async move { while events.poll().await.is_ok() {} });
        // Its own topic first: Mosquitto 2.0.11 closes an MQTT 5 connection whose
        // publish the ACL denies.
        for (topic, value) in [
            ("city/ba-dinh/airquality/aq-0001/up", 12),
            ("city/ba-dinh/airquality/aq-0002/up", 999),
        ] {
            let pack = format!(r#"[{{"bn":"{}:","n":"pm25","u":"ug/m3","v":{value}}}]"#, {
                topic.split('/').nth(3).unwrap()
            });
            client
                .publish(topic, QoS::AtLeastOnce, false, pack.into_bytes())
                .await
                .unwrap();
        }
        let (tas, mut tas_events) = connect_at(
            "127.0.0.1",
            port,
            "tasmota-user",
            Some(("tasmota-user", TASMOTA_PASS)),
        )
        .await
        .unwrap();
        let poll2 = tokio::spawn(async move { while tas_events.poll().await.is_ok() {} });
        tas.publish(
            "tele/tasmota-a1/SENSOR",
            QoS::AtLeastOnce,
            false,
            br#"{"BME280":{"Temperature":21.5}}"#.to_vec(),
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        while common::reading_count(&data) < 2 {
            assert!(
                started.elapsed() < WAIT,
                "the two own-topic readings were not stored: {}\n{}",
                common::reading_count(&data),
                gw.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        poll.abort();
        poll2.abort();
    });
    assert_eq!(
        common::readings_where(&data, |device, _| device == "aq-0002"),
        0,
        "a device cannot publish another device's topic"
    );
    assert_eq!(
        common::query_u64(
            &data,
            "SELECT COUNT(*) FROM devices WHERE device = 'tasmota-a1' AND district = 'tay-ho'"
        ),
        1,
        "the registry's district for a Tasmota device"
    );
    drop(gw);
}
