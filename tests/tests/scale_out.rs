//! Scale-out as one city: three gateways in one MQTT share group on a real Mosquitto,
//! forwarding to a real VictoriaMetrics, and a query-only node (`gateway serve`), all the
//! real `gateway` binary.
//!
//! `three_gateways_and_a_query_node_show_one_city`: a simulated fleet (`simulators
//! fleet`: about 100 native SenML stations and some Tasmota plugs, no faults) reports
//! while one gateway is killed with SIGKILL and restarted. Then every node (each gateway
//! reads the store by default in a share group, and the query-only node) must list every
//! device with zero gaps and zero duplicates, answer `/api/latest` and `/api/aqi`
//! identically, and `simulators verify` must find nothing lost or doubled in the store.
//! A device whose messages 10 to 14 never arrive (its outage) must then show the same
//! five gaps on every node, whichever gateway received which of its messages.
//!
//! `the_store_and_the_hot_tier_answer_alike`: one gateway alone (hot tier) and a
//! query-only node over the store it writes answer `/api/devices`, `/api/latest`,
//! `/api/series` and `/api/aqi` with the same JSON (floats within storage rounding).
//!
//! The binaries are the ones cargo built beside this test (`cargo test --workspace`
//! builds them; see [`tests::built_binary`]).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{
    ChildGuard, GatewayOptions, GatewayProcess, Mosquitto, VictoriaMetrics, VictoriaMetricsOptions,
    built_binary, free_port, http_get, wait_until,
};

/// Bound on waits for the pipeline and the store to catch up.
const SETTLE: Duration = Duration::from_secs(180);
/// Bound on a (debug build) gateway start on a busy 2-core machine.
const READY: Duration = Duration::from_secs(60);
/// The share group of the gateways.
const GROUP: &str = "city";

/// VictoriaMetrics as a share group needs it: a batch re-sent after a crash between the
/// store's answer and the outbox delete overwrites rather than doubles.
fn store() -> VictoriaMetrics {
    VictoriaMetrics::start_with(VictoriaMetricsOptions {
        extra_args: vec!["-dedup.minScrapeInterval=1ms".into()],
        ..VictoriaMetricsOptions::default()
    })
    .unwrap()
}

fn gateway(broker: &Mosquitto, store: &VictoriaMetrics, dir: &Path, id: &str) -> GatewayProcess {
    // The public AQI feed evaluates every 2 s (its AQI series go to the store).
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "[public]\ninterval_s = 2\n").unwrap();
    let mut opts = GatewayOptions::new(broker, id, &dir.join(id));
    opts.store = Some(store.url());
    opts.share_group = Some(GROUP.into());
    opts.extra = vec!["--config".into(), config.display().to_string()];
    opts.ready_timeout = READY;
    GatewayProcess::start(&built_binary("gateway"), &opts).unwrap()
}

/// `gateway serve`: the query-only node.
struct QueryNode {
    _child: ChildGuard,
    port: u16,
}

impl QueryNode {
    fn start(store: &VictoriaMetrics, dir: &Path) -> Self {
        let port = free_port().unwrap();
        let mut cmd = Command::new(built_binary("gateway"));
        cmd.args(["serve", "--store", &store.url()])
            .args(["--http", &format!("127.0.0.1:{port}")]);
        let child = ChildGuard::spawn("gateway serve", &mut cmd, &dir.join("serve.log")).unwrap();
        wait_until(
            "the query-only node is ready",
            READY,
            || http_get(port, "/health/ready").map(|(s, _)| s),
            |s| *s == Some(200),
        );
        Self {
            _child: child,
            port,
        }
    }
}

/// A node of the city, by name and HTTP port.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    port: u16,
}

fn get_json(node: &Node, path: &str) -> Value {
    let (status, body) =
        http_get(node.port, path).unwrap_or_else(|| panic!("{}: GET {path}: no answer", node.name));
    assert_eq!(status, 200, "{}: GET {path}: {body}", node.name);
    serde_json::from_str(&body).unwrap()
}

/// Device id -> (gaps, duplicates) as a node's `/api/devices` lists them.
fn health(node: &Node) -> BTreeMap<String, (i64, i64)> {
    get_json(node, "/api/devices")["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap().to_owned(),
                (
                    d["gaps"].as_i64().unwrap(),
                    d["duplicates"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The devices of a manifest (`device,metric,ts_ms,value,sent_ns,flags` rows).
fn manifest_devices(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(',').next())
        .map(str::to_owned)
        .collect()
}

/// Runs `simulators verify` against the store until it passes (freshly registered
/// series become searchable a little after the write), panicking with its report if it
/// still fails after [`SETTLE`].
fn verify_store(manifest: &Path, store: &VictoriaMetrics) -> String {
    let started = Instant::now();
    loop {
        store.force_flush().unwrap();
        let out = Command::new(built_binary("simulators"))
            .args(["verify", "--manifest"])
            .arg(manifest)
            .args(["--victoria", &store.url()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return text;
        }
        assert!(
            started.elapsed() < SETTLE,
            "simulators verify against VictoriaMetrics failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A fleet run of `simulators fleet` in the background.
fn start_fleet(broker: &Mosquitto, dir: &Path, manifest: &Path, args: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(built_binary("simulators"));
    cmd.arg("fleet")
        .args(["--broker", &format!("127.0.0.1:{}", broker.port())])
        .args(["--quiet", "--persistent", "--manifest"])
        .arg(manifest)
        .args(args);
    ChildGuard::spawn("simulators fleet", &mut cmd, &dir.join("fleet.log")).unwrap()
}

fn wait_for_exit(child: &mut ChildGuard, what: &str, timeout: Duration) {
    let status = wait_until(what, timeout, || child.try_wait().unwrap(), Option::is_some);
    assert!(status.unwrap().success(), "{what}: {status:?}");
}

/// A native SenML-CBOR message of `device` with sequence number `seq` and a PM2.5
/// reading at `t_s`.
fn senml_message(device: &str, seq: u32, t_s: i64, pm25: f64) -> (String, Vec<u8>) {
    use schemas::senml::{Record, cbor};
    let bn = format!("{device}:");
    let mut r = Record::measurement("pm25", "ug/m3", pm25);
    r.base_name = Some(&bn);
    r.base_time = Some(t_s as f64);
    r.seq = Some(seq);
    let mut buf = vec![0u8; 256];
    let n = cbor::encode(&[r], &mut buf).unwrap();
    buf.truncate(n);
    (format!("city/hoan-kiem/airquality/{device}/up"), buf)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fixed evaluation time (the next whole second, after everything sent has landed), so
/// that every node answers the same question. (A past `at` is answered from the device
/// state of that time by the store, from the current one by the hot tier.)
fn at_ms() -> i64 {
    (now_s() + 1) * 1000
}

#[test]
fn three_gateways_and_a_query_node_show_one_city() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = store();
    let mut gateways: Vec<GatewayProcess> = ["gw-a", "gw-b", "gw-c"]
        .iter()
        .map(|id| gateway(&broker, &store, dir.path(), id))
        .collect();
    let query = QueryNode::start(&store, dir.path());

    // Three hours of history of ten more stations, as fast as it goes, so that the hourly
    // indices have hours to work on.
    let history = dir.path().join("history.csv");
    let mut past = start_fleet(
        &broker,
        dir.path(),
        &history,
        &[
            "--air",
            "10",
            "--weather",
            "0",
            "--noise",
            "0",
            "--wifi",
            "0",
            "--speed",
            "max",
            "--start",
            "-3h",
            "--duration",
            "3h",
            "--seed",
            "61",
            "--id-prefix",
            "hist-",
        ],
    );
    wait_for_exit(&mut past, "the history run ends", Duration::from_secs(240));

    // About 100 native stations and a tenth as Tasmota plugs, one message every 30
    // simulated seconds for 20 simulated minutes, at 30x: about 40 s of traffic.
    let manifest = dir.path().join("fleet.csv");
    let mut fleet = start_fleet(
        &broker,
        dir.path(),
        &manifest,
        &[
            "--air",
            "60",
            "--weather",
            "15",
            "--noise",
            "15",
            "--wifi",
            "20",
            "--mix",
            "tasmota=0.1",
            "--period",
            "30s",
            "--speed",
            "30x",
            "--start",
            "-21m",
            "--duration",
            "20m",
            "--seed",
            "16",
            "--id-prefix",
            "so-",
        ],
    );
    // Mid-run: kill one gateway outright, restart it a few seconds later.
    std::thread::sleep(Duration::from_secs(12));
    gateways[1].kill().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    gateways[1].start_again().unwrap();
    wait_for_exit(&mut fleet, "the fleet run ends", Duration::from_secs(240));

    let mut devices = manifest_devices(&manifest);
    assert!(devices.len() >= 100, "{} devices", devices.len());
    let report = verify_store(&manifest, &store);
    eprintln!("simulators verify (VictoriaMetrics):\n{report}");
    verify_store(&history, &store);
    devices.extend(manifest_devices(&history));

    let mut nodes: Vec<Node> = ["gw-a", "gw-b", "gw-c"]
        .iter()
        .zip(&gateways)
        .map(|(name, gw)| Node {
            name: (*name).into(),
            port: gw.http_port(),
        })
        .collect();
    nodes.push(Node {
        name: "query-only".into(),
        port: query.port,
    });
    // The broker split the traffic: every gateway of the group received some of it.
    for gw in &gateways {
        let got = gw
            .metric(r#"ingest_messages_total{format="senml"}"#)
            .unwrap_or(0.0);
        assert!(got > 0.0, "a gateway of the group received nothing");
    }

    // Every node lists every device, none with a gap or a duplicate (health counts
    // are reused for up to 30 s: one read while the last messages were still on their way
    // may count gaps a little longer).
    for node in &nodes {
        let bad = |h: &BTreeMap<String, (i64, i64)>| -> Vec<(String, (i64, i64))> {
            h.iter()
                .filter(|(d, (gaps, dups))| devices.contains(*d) && (*gaps != 0 || *dups != 0))
                .map(|(d, v)| (d.clone(), *v))
                .collect()
        };
        let listed = wait_until(
            &format!(
                "{} lists every device, none with gaps or duplicates",
                node.name
            ),
            SETTLE,
            || health(node),
            |h| devices.iter().all(|d| h.contains_key(d)) && bad(h).is_empty(),
        );
        assert_eq!(listed.len(), devices.len(), "{}: extra devices", node.name);
    }

    // The same question gets the same answer on every node.
    let at = at_ms();
    for path in [
        format!("/api/latest?at={at}&detail=true"),
        format!("/api/aqi?at={at}"),
    ] {
        let first = get_json(&nodes[0], &path);
        assert!(
            !first.to_string().contains("\"groups\":[]")
                && !first.to_string().contains("\"stations\":[]"),
            "{path}: an empty answer: {first}"
        );
        for node in &nodes[1..] {
            assert_eq!(
                get_json(node, &path),
                first,
                "{path}: {} and {} disagree",
                node.name,
                nodes[0].name
            );
        }
    }

    // The public feed's AQI series, written by the gateways of the group from the store,
    // carry the indices every node shows.
    let aqi = get_json(&nodes[3], "/api/aqi");
    let expected: BTreeMap<String, u64> = aqi["stations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            Some((
                s["device"].as_str()?.to_owned(),
                s["vn_aqi_hourly"]["value"].as_u64()?,
            ))
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "no station has an hourly index: {aqi}"
    );
    wait_until(
        "the store's aqi_value series match the query node's stations",
        SETTLE,
        || {
            store.force_flush().unwrap();
            store
                .export(r#"aqi_value{scope="station",index="VN_AQI"}"#)
                .unwrap()
                .iter()
                .filter_map(|s| {
                    let newest = s.points().last()?.1;
                    Some((s.label("device")?.to_owned(), newest as u64))
                })
                .collect::<BTreeMap<String, u64>>()
        },
        |got| expected.iter().all(|(d, v)| got.get(d) == Some(v)),
    );

    // A device's outage: messages 10..15 of 30 never arrive; the rest reach whichever
    // gateway the broker picks.
    let t0 = now_s() - 40;
    let outage: Vec<(String, Vec<u8>)> = (0u32..30)
        .filter(|s| !(10..15).contains(s))
        .map(|s| senml_message("so-outage-1", s, t0 + i64::from(s), 10.0 + f64::from(s)))
        .collect();
    tests::publish(broker.host(), broker.port(), outage, "outage-device").unwrap();
    for node in &nodes {
        wait_until(
            &format!("{} counts the outage's five gaps", node.name),
            SETTLE,
            || health(node).get("so-outage-1").copied(),
            |h| *h == Some((5, 0)),
        );
    }
    for gw in &mut gateways {
        gw.stop().unwrap();
    }
}

/// Compares two JSON answers: the same shape, the same strings, integers and booleans,
/// numbers within `rel` (the store keeps floats to about 12 significant digits).
fn assert_alike(a: &Value, b: &Value, rel: f64, path: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: BTreeSet<_> = x.keys().collect();
            let ky: BTreeSet<_> = y.keys().collect();
            assert_eq!(kx, ky, "{path}: different fields");
            for k in kx {
                assert_alike(&x[k], &y[k], rel, &format!("{path}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: different lengths\n{a}\n{b}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_alike(p, q, rel, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(p), Value::Number(q)) if p.is_f64() || q.is_f64() => {
            let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
            assert!(
                (p - q).abs() <= rel * p.abs().max(q.abs()).max(1e-9),
                "{path}: {p} vs {q}"
            );
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn the_store_and_the_hot_tier_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = store();
    let mut opts = GatewayOptions::new(&broker, "gw-one", &dir.path().join("gw-one"));
    opts.store = Some(store.url());
    opts.ready_timeout = READY;
    let mut gw = GatewayProcess::start(&built_binary("gateway"), &opts).unwrap();
    let query = QueryNode::start(&store, dir.path());

    // Two simulated hours of a small mixed fleet, as fast as it goes, ending now.
    let manifest = dir.path().join("fleet.csv");
    let mut fleet = start_fleet(
        &broker,
        dir.path(),
        &manifest,
        &[
            "--air",
            "12",
            "--weather",
            "4",
            "--noise",
            "4",
            "--wifi",
            "4",
            "--mix",
            "tasmota=0.15",
            "--period",
            "60s",
            "--speed",
            "max",
            "--start",
            "-2h",
            "--duration",
            "2h",
            "--seed",
            "3",
            "--id-prefix",
            "one-",
        ],
    );
    wait_for_exit(&mut fleet, "the fleet run ends", Duration::from_secs(240));
    verify_store(&manifest, &store);
    let devices = manifest_devices(&manifest);

    let hot = Node {
        name: "hot tier".into(),
        port: gw.http_port(),
    };
    let from_store = Node {
        name: "store".into(),
        port: query.port,
    };
    wait_until(
        "the store lists every device",
        SETTLE,
        || health(&from_store),
        |h| devices.iter().all(|d| h.contains_key(d)),
    );
    let at = at_ms();
    let air: Vec<&String> = devices.iter().filter(|d| d.contains("aq")).collect();
    let pairs = air
        .iter()
        .take(3)
        .map(|d| format!("{d}:pm25"))
        .collect::<Vec<_>>()
        .join(",");
    let from = at - 3 * 3_600_000;
    for path in [
        format!("/api/devices?at={at}"),
        format!("/api/latest?at={at}&detail=true"),
        format!("/api/aqi?at={at}"),
        format!("/api/series?series={pairs}&from={from}&to={at}&step=10m&agg=avg"),
        format!("/api/series?series={pairs}&from={from}&to={at}&step=15m&agg=max"),
        format!("/api/series?series={pairs}&from={from}&to={at}&step=1h&agg=count"),
    ] {
        let a = get_json(&hot, &path);
        let b = get_json(&from_store, &path);
        // Something to compare: every device, groups, stations, buckets.
        let filled = match path.split('?').next().unwrap() {
            "/api/devices" => a["devices"].as_array().unwrap().len() == devices.len(),
            "/api/latest" => a["devices"].as_array().unwrap().len() == devices.len(),
            "/api/aqi" => a["stations"].as_array().unwrap().len() >= air.len() / 2,
            _ => a["series"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["t"].as_array().unwrap().len() >= 2),
        };
        assert!(filled, "{path}: too little in the hot tier's answer: {a}");
        assert_alike(&a, &b, 1e-9, &path);
    }
    gw.stop().unwrap();
}
