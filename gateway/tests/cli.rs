//! The command line as users and scripts see it: help texts that explain
//! every option, and bad configuration failing at start with the key named.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::process::{Command, Output};

fn gateway(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn run_help_mentions_every_option_with_its_default_and_variable() {
    let out = gateway(&["run", "--help"], &[]);
    assert!(out.status.success());
    let help = text(&out);
    for (flag, env) in [
        ("--config", "GATEWAY_CONFIG"),
        ("--mqtt", "GATEWAY_MQTT"),
        ("--mqtt-username", "GATEWAY_MQTT_USERNAME"),
        ("--mqtt-password", "GATEWAY_MQTT_PASSWORD"),
        ("--client-id", "GATEWAY_CLIENT_ID"),
        ("--share-group", "GATEWAY_SHARE_GROUP"),
        ("--store", "GATEWAY_STORE"),
        ("--org", "GATEWAY_ORG"),
        ("--bucket", "GATEWAY_BUCKET"),
        ("--token", "GATEWAY_TOKEN"),
        ("--data-dir", "GATEWAY_DATA_DIR"),
        ("--http", "GATEWAY_HTTP"),
        ("--embedded-broker", "GATEWAY_EMBEDDED_BROKER"),
        ("--log-format", "GATEWAY_LOG_FORMAT"),
        ("--ca-file", "GATEWAY_CA_FILE"),
        ("--client-cert", "GATEWAY_CLIENT_CERT"),
        ("--client-key", "GATEWAY_CLIENT_KEY"),
        ("--http-token", "GATEWAY_HTTP_TOKEN"),
        ("--http-token-file", "GATEWAY_HTTP_TOKEN_FILE"),
        ("--metrics-require-token", "GATEWAY_METRICS_REQUIRE_TOKEN"),
        ("--http-insecure", "GATEWAY_HTTP_INSECURE"),
        ("--broker-password-file", "GATEWAY_BROKER_PASSWORD_FILE"),
        ("--broker-acl-file", "GATEWAY_BROKER_ACL_FILE"),
        ("--broker-allow-anonymous", "GATEWAY_BROKER_ALLOW_ANONYMOUS"),
        ("--store-username", "GATEWAY_STORE_USERNAME"),
        ("--store-password", "GATEWAY_STORE_PASSWORD"),
        ("--query-source", "GATEWAY_QUERY_SOURCE"),
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}:\n{help}");
        assert!(help.contains(env), "run --help lacks {env}:\n{help}");
    }
    assert_eq!(
        help.matches("[default:").count(),
        27,
        "every option states its default:\n{help}"
    );
    assert!(help.contains("mqtt://127.0.0.1:1883") && help.contains("./data"));
}

#[test]
fn top_level_and_deadletters_help_list_the_subcommands() {
    let help = text(&gateway(&["--help"], &[]));
    for sub in [
        "run",
        "serve",
        "check-config",
        "deadletters",
        "bench",
        "devices",
    ] {
        assert!(help.contains(sub), "--help lacks {sub}:\n{help}");
    }
    // The query-only node explains itself and refuses to start without a store.
    let help = text(&gateway(&["serve", "--help"], &[]));
    for flag in [
        "--store",
        "--http",
        "--http-token",
        "GATEWAY_STORE",
        "query-only",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}:\n{help}");
    }
    let out = gateway(&["serve", "--http", "127.0.0.1:0"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("store.url"), "{}", text(&out));
    let help = text(&gateway(&["deadletters", "--help"], &[]));
    for sub in ["list", "show", "replay", "--data-dir", "--config"] {
        assert!(
            help.contains(sub),
            "deadletters --help lacks {sub}:\n{help}"
        );
    }
    let help = text(&gateway(&["deadletters", "replay", "--help"], &[]));
    assert!(help.contains("--reason") && help.contains("IDS"), "{help}");
}

#[test]
fn the_example_config_is_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway.toml");
    let out = gateway(&["check-config", "--config", root], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("configuration OK"));
}

#[test]
fn bad_configuration_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let cases: [(&str, &str); 4] = [
        ("[mqtt]\nurl = \"http://broker:1883\"\n", "mqtt.url"),
        ("[mqtt]\nreceive_maximum = 0\n", "mqtt.receive_maximum"),
        ("[mqtt]\nsesion_expiry_s = 5\n", "sesion_expiry_s"),
        (
            "[ingest]\nmax_payload_bytes = \"big\"\n",
            "max_payload_bytes",
        ),
    ];
    for (body, key) in cases {
        std::fs::write(&file, body).unwrap();
        for sub in ["run", "check-config"] {
            let out = gateway(&[sub, "--config", file.to_str().unwrap()], &[]);
            assert!(!out.status.success(), "{sub} accepted {body:?}");
            let msg = text(&out);
            assert!(
                msg.contains(key),
                "{sub}: error for {body:?} does not name {key}: {msg}"
            );
        }
    }
    // Environment variables are checked the same way and named with their flag.
    let out = gateway(&["check-config"], &[("GATEWAY_MQTT", "tcp://x")]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("mqtt.url") && msg.contains("GATEWAY_MQTT"),
        "{msg}"
    );
    // Secrets never appear in the printed settings.
    let out = gateway(
        &["check-config", "--mqtt-username", "u"],
        &[
            ("GATEWAY_MQTT_PASSWORD", "s3cr3t-pw"),
            ("GATEWAY_TOKEN", "t0ken-x"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        !shown.contains("s3cr3t-pw") && !shown.contains("t0ken-x"),
        "{shown}"
    );
}

/// A message log damaged before its last segment is not a torn write: the gateway refuses
/// to start, names the file and says what to do, and leaves the data as it is.
#[test]
fn a_damaged_message_log_stops_the_start_with_what_to_do() {
    use ingest::log::{Arrival, LogOptions, LogWriter};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The state database first (the log continues above its applied position).
    drop(ingest::Pipeline::open(&data, ingest::IngestConfig::default()).unwrap());
    let log_dir = data.join(ingest::log::LOG_DIR);
    let opts = LogOptions { segment_bytes: 100 };
    let (mut w, _) = LogWriter::open(&log_dir, opts, 0).unwrap();
    for pkid in 1..=6u16 {
        w.append(&Arrival {
            topic: b"tele/d1/SENSOR",
            payload: &[b'x'; 60],
            qos: 1,
            retain: false,
            dup: false,
            pkid,
            received_ns: 1,
        });
        w.commit().unwrap();
    }
    drop(w);
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    assert!(segments.len() > 2, "{segments:?}");
    // Flip a payload byte of the first segment's only message (after its index record).
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[end - 2] ^= 0x01;
    std::fs::write(&segments[0], &bytes).unwrap();
    let out = gateway(
        &[
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--mqtt",
            "mqtt://127.0.0.1:9",
            "--http",
            "127.0.0.1:0",
        ],
        &[],
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("move the file aside"), "{t}");
    assert!(
        t.contains(segments[0].file_name().unwrap().to_str().unwrap()),
        "{t}"
    );
    // Nothing was changed on disk.
    assert_eq!(std::fs::read(&segments[0]).unwrap(), bytes);
}
