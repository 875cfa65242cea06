//! The nasty-input corpus as an ordinary test: every file under `tests/nasty/` goes
//! through every decoder and parser (the `schemas` codecs, the gateway's five format
//! decoders, the routed path) and through a real [`Pipeline`] on SQLite. Each must return
//! a clean error or valid data and never panic. The checks are the fuzzers' oracles
//! (`fuzz/src/oracle.rs`, `fuzz/src/ingest_oracle.rs`), so a crash a fuzzer finds becomes
//! a regression case by copying its input into `tests/nasty/<format>/`.
//!
//! File names carry expectations for the decoder of their folder's format:
//! `accept-*` must decode, `reject-*` must be refused; other names only must not panic.
//! Files in `routed/` are `<topic>\n<payload>`. Inputs too big to keep as files (1 MiB
//! payloads, very deep nesting) are generated here.

#[path = "../../fuzz/src/ingest_oracle.rs"]
mod ingest_oracle;
#[path = "../../fuzz/src/oracle.rs"]
mod oracle;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ingest::decode::{self, Context};
use ingest::route::{Router, default_routes};
use ingest::{Format, Inbound, IngestConfig, Pipeline, Synchronous};
use schemas::meta::OwnedMeta;
use schemas::senml::{self, Record, cbor, json};
use schemas::topic::Topic;

/// Where the corpus lives.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("nasty")
}

/// Every file of the corpus, sorted, with its folder (the format) relative to the corpus.
fn corpus() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let root = corpus_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let format = p
                .parent()
                .and_then(|d| d.strip_prefix(&root).ok())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            (format, p)
        })
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `check` on each named input and fails once, listing every input that panicked.
fn run_all(inputs: impl IntoIterator<Item = (String, Vec<u8>)>, check: fn(&[u8])) {
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, bytes) in inputs {
        count += 1;
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {msg}"));
        }
    }
    assert!(count > 0, "no inputs");
    assert!(
        failures.is_empty(),
        "{} of {count} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every decoder and parser this repository has, on the same bytes.
fn every_decoder(data: &[u8]) {
    oracle::all(data);
    ingest_oracle::all(data);
    ingest_oracle::routed_bytes(data);
}

#[test]
fn every_file_through_every_decoder() {
    let inputs = corpus()
        .into_iter()
        .map(|(_, p)| (p.display().to_string(), read(&p)));
    run_all(inputs, every_decoder);
}

/// Whether the decoder of a corpus folder accepts the bytes; `None` for folders whose
/// format has no decoder here.
fn accepted_by(format: &str, bytes: &[u8]) -> Option<bool> {
    Some(match format {
        "senml-cbor" => cbor::decode(bytes)
            .and_then(|it| it.collect::<Result<Vec<Record<'_>>, _>>())
            .is_ok(),
        "senml-json" => json::decode_owned(bytes).is_ok(),
        "topic" => std::str::from_utf8(bytes).is_ok_and(|s| Topic::parse(s).is_ok()),
        "meta" => OwnedMeta::decode(bytes).is_ok(),
        "tasmota" => ingest_accepts(Format::Tasmota, bytes),
        "esphome" => ingest_accepts(Format::Esphome, bytes),
        "ultralight" => ingest_accepts(Format::Ultralight, bytes),
        "line-protocol" => ingest_accepts(Format::LineProtocol, bytes),
        "routed" => {
            let (topic, payload) = split_routed(bytes);
            let router = Router::new(&default_routes()).expect("default routes compile");
            match std::str::from_utf8(topic)
                .ok()
                .and_then(|t| router.route(t))
            {
                None => false,
                Some((format, captures)) => {
                    let ctx = Context {
                        captures,
                        received_at_ns: ingest_oracle::RECEIVED_AT_NS,
                        tasmota_utc_offset_s: 7 * 3600,
                        device_kinds: &[],
                    };
                    decode::decode(format, payload, &ctx).is_ok()
                }
            }
        }
        _ => return None,
    })
}

/// Whether a format's decoder accepts a payload on its default route's topic.
fn ingest_accepts(format: Format, payload: &[u8]) -> bool {
    let bytes = [default_topic(format).as_bytes(), b"\n", payload].concat();
    accepted_by("routed", &bytes).unwrap_or(false)
}

/// A typical topic of each format's default route.
fn default_topic(format: Format) -> &'static str {
    match format {
        Format::Senml => "city/hoan-kiem/airquality/aq-0001/up",
        Format::Tasmota => "tele/tasmota_1A2B3C/SENSOR",
        Format::Esphome => "weather-7/sensor/temperature/state",
        Format::Ultralight => "/4jggokgpepnvsb2uv4s40d59ov/ul-0009/attrs",
        Format::LineProtocol => "telegraf/edge-box/cpu",
        f => panic!("no typical topic for {f} yet: add one here"),
    }
}

/// `<topic>\n<payload>`, as in `tests/nasty/routed/`.
fn split_routed(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

#[test]
fn file_names_state_the_verdict() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (format, path) in corpus() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let expect = if name.starts_with("accept-") {
            true
        } else if name.starts_with("reject-") {
            false
        } else {
            continue;
        };
        let Some(got) = accepted_by(&format, &read(&path)) else {
            continue;
        };
        checked += 1;
        if got != expect {
            let verdict = if got { "accepted" } else { "rejected" };
            wrong.push(format!("{format}/{name}: {verdict}"));
        }
    }
    assert!(checked >= 200, "only {checked} files carry a verdict");
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

#[test]
fn corpus_covers_every_format() {
    let files = corpus();
    for format in [
        "senml-cbor",
        "senml-json",
        "topic",
        "meta",
        "tasmota",
        "esphome",
        "ultralight",
        "line-protocol",
        "routed",
    ] {
        let n = files.iter().filter(|(f, _)| f == format).count();
        assert!(n >= 10, "tests/nasty/{format} has only {n} files");
    }
}

const MIB: usize = 1 << 20;

/// Deterministic noise (xorshift), so a failure reproduces.
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A CBOR head (major type and argument) in its longest form, as an attacker would write it.
fn cbor_head(major: u8, len: u64) -> Vec<u8> {
    let mut h = vec![(major << 5) | 27];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// Payloads too large or too deep to keep as files.
fn generated() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    out.push(("1 MiB of noise".into(), noise(MIB, 0x9e37_79b9_7f4a_7c15)));
    let mut json_noise = b"[".to_vec();
    json_noise.extend(noise(MIB, 7));
    out.push(("1 MiB of noise after '['".into(), json_noise));
    out.push(("1 MiB of zero bytes".into(), vec![0; MIB]));
    out.push(("1 MiB of '['".into(), vec![b'['; MIB]));
    out.push(("1 MiB of '{'".into(), vec![b'{'; MIB]));

    // One record whose name is a 1 MiB string: valid CBOR, an invalid SenML name.
    let mut big_name = vec![0x81, 0xa2, 0x00];
    big_name.extend(cbor_head(3, MIB as u64));
    big_name.extend(std::iter::repeat_n(b'a', MIB));
    big_name.extend([0x02, 0x01]);
    out.push(("CBOR pack with a 1 MiB name".into(), big_name));

    // 1 MiB of well-formed JSON records.
    let mut many = b"[".to_vec();
    let rec = br#"{"bn":"aq-0001:","n":"pm25","u":"ug/m3","v":12.5,"t":-1},"#;
    while many.len() + rec.len() < MIB {
        many.extend_from_slice(rec);
    }
    many.pop();
    many.push(b']');
    out.push(("1 MiB SenML-JSON pack".into(), many.clone()));

    // The same pack as CBOR, through the codec itself.
    let pack = json::decode_owned(&many).expect("generated JSON pack decodes");
    let records: Vec<Record<'_>> = pack.records().collect();
    let mut buf = vec![0u8; MIB];
    let n = cbor::encode(&records, &mut buf).expect("generated pack encodes");
    buf.truncate(n);
    out.push(("large SenML-CBOR pack".into(), buf));

    // Nesting far deeper than any stack would survive if a decoder recursed.
    let deep = 1_000_000;
    let mut deep_cbor = b"\x81\xa3\x00\x61a\x02\x01\x63foo".to_vec();
    deep_cbor.extend(std::iter::repeat_n(0x81, deep));
    deep_cbor.push(0x00);
    out.push(("CBOR label nested 1M arrays deep".into(), deep_cbor));
    let mut deep_indef = b"\x81\xa3\x00\x61a\x02\x01\x63foo".to_vec();
    deep_indef.extend(std::iter::repeat_n(0x9f, deep / 2));
    deep_indef.extend(std::iter::repeat_n(0xff, deep / 2));
    out.push((
        "CBOR label nested 500k indefinite arrays".into(),
        deep_indef,
    ));
    let mut deep_json = br#"[{"n":"a","v":1,"x":"#.to_vec();
    deep_json.extend(std::iter::repeat_n(b'[', deep));
    deep_json.extend(std::iter::repeat_n(b']', deep));
    deep_json.extend(b"}]");
    out.push(("JSON label nested 1M arrays deep".into(), deep_json));

    // Lengths that promise far more than the input holds.
    for (major, what) in [(2u8, "bytes"), (3, "text"), (4, "array"), (5, "map")] {
        let mut top = cbor_head(major, u64::MAX);
        top.extend(b"\xa0\xa0");
        out.push((format!("top-level {what} of length 2^64-1"), top));
        let mut inner = vec![0x81, 0xa1, 0x63, b'f', b'o', b'o'];
        inner.extend(cbor_head(major, u64::MAX - 1));
        inner.extend(b"\x00\x00");
        out.push((format!("skipped {what} of length 2^64-2"), inner));
    }
    // The most records per byte a pack can hold (one-byte empty maps), at the gateway's
    // default payload limit of 64 KiB: decoding allocates a few hundred bytes per record,
    // so this is the largest pack the gateway can be made to build from one message.
    let limit = 64 * 1024;
    let mut empties = cbor_head(4, limit as u64 - 9);
    empties.extend(std::iter::repeat_n(0xa0, limit - 9));
    out.push(("64 KiB CBOR pack of empty records".into(), empties));
    out
}

#[test]
fn generated_large_and_deep_inputs() {
    run_all(generated(), oracle::all);
}

#[test]
fn large_inputs_decode_to_what_they_hold() {
    let inputs = generated();
    let find = |name: &str| {
        inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .expect("generated input exists")
    };
    let json_pack = senml::decode_any(find("1 MiB SenML-JSON pack")).expect("JSON pack");
    let cbor_pack = senml::decode_any(find("large SenML-CBOR pack")).expect("CBOR pack");
    assert!(
        json_pack.records.len() > 15_000,
        "{}",
        json_pack.records.len()
    );
    assert_eq!(json_pack, cbor_pack);
    // Nothing in SenML bounds a name's length: a 1 MiB name decodes and resolves (the
    // gateway's payload limit is what bounds it).
    let big = cbor::decode_vec(find("CBOR pack with a 1 MiB name")).expect("decodes");
    assert_eq!(big[0].name.map(str::len), Some(MIB));
    assert!(senml::Resolver::new().resolve(&big[0]).is_ok());
    for name in [
        "CBOR label nested 1M arrays deep",
        "CBOR label nested 500k indefinite arrays",
    ] {
        let recs = cbor::decode_vec(find(name)).expect("a deep unknown label is skipped");
        assert_eq!(recs.len(), 1, "{name}");
    }
    // serde_json skips an ignored value with an explicit stack, not by recursion.
    let deep = json::decode_owned(find("JSON label nested 1M arrays deep"))
        .expect("a deep unknown label is skipped");
    assert_eq!(deep.records.len(), 1);
}

/// The message a corpus file stands for: its folder's default topic and the file as
/// payload; `routed/` files carry their own topic; `topic/` files are topics.
fn as_message(format: &str, bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let on = |f: Format| Some((default_topic(f).to_owned(), bytes.to_vec()));
    match format {
        "senml-cbor" | "senml-json" => on(Format::Senml),
        "tasmota" => on(Format::Tasmota),
        "esphome" => on(Format::Esphome),
        "ultralight" => on(Format::Ultralight),
        "line-protocol" => on(Format::LineProtocol),
        "meta" => Some((
            "city/hoan-kiem/airquality/aq-0001/meta".to_owned(),
            bytes.to_vec(),
        )),
        "routed" => {
            let (topic, payload) = split_routed(bytes);
            let topic = std::str::from_utf8(topic).ok()?;
            Some((topic.to_owned(), payload.to_vec()))
        }
        "topic" => {
            let topic = std::str::from_utf8(bytes).ok()?;
            Some((
                topic.to_owned(),
                br#"[{"n":"pm25","u":"ug/m3","v":1}]"#.to_vec(),
            ))
        }
        _ => None,
    }
}

/// Whether a topic is a native `status` or `meta` topic: those update device state and
/// hold no readings, so they neither commit readings nor make dead letters.
fn is_device_channel(topic: &str) -> bool {
    Topic::parse(topic).is_ok_and(|t| t.channel != schemas::topic::Channel::Up)
}

/// The whole pipeline on real SQLite, one message per batch: every message must commit
/// (no error, no panic) and end as readings or a dead letter, never as nothing.
#[test]
fn every_file_through_the_pipeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = IngestConfig {
        synchronous: Synchronous::Normal,
        ..IngestConfig::default()
    };
    let open = || Pipeline::open(dir.path(), cfg.clone()).expect("pipeline opens");
    let mut pipeline = open();
    // (name, topic, payload, whether the decoder of its folder refuses it)
    let mut messages: Vec<(String, String, Vec<u8>, bool)> = corpus()
        .into_iter()
        .filter_map(|(format, path)| {
            let (topic, payload) = as_message(&format, &read(&path))?;
            let name = path.file_name()?.to_string_lossy().into_owned();
            // `meta/` verdicts are about the typed decoder; the pipeline keeps any JSON
            // object as meta. `topic/` verdicts are about the native scheme only.
            let refused = name.starts_with("reject-") && format != "meta" && format != "topic";
            Some((path.display().to_string(), topic, payload, refused))
        })
        .collect();
    let aq = default_topic(Format::Senml);
    for (name, bytes) in generated() {
        messages.push((name, aq.to_owned(), bytes, false));
    }
    assert!(messages.len() > 250, "{}", messages.len());
    let mut failures = Vec::new();
    for (name, topic, payload, refused) in messages {
        let msg = Inbound {
            topic: topic.clone(),
            payload: payload.into(),
            received_at_ns: ingest_oracle::RECEIVED_AT_NS,
            retained: false,
        };
        let result = panic::catch_unwind(AssertUnwindSafe(|| pipeline.process(&[msg])));
        match result {
            Err(_) => {
                failures.push(format!("{name}: panicked"));
                // The panic may have left a transaction open: start again.
                pipeline = open();
            }
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Ok(Ok(out)) => {
                let kept = out.readings_committed + out.duplicates + out.dead_letters;
                if out.messages != 1 || (kept == 0 && !is_device_channel(&topic)) {
                    failures.push(format!("{name}: neither stored nor dead-lettered: {out:?}"));
                } else if refused
                    && !is_device_channel(&topic)
                    && (out.dead_letters != 1 || out.readings_committed != 0)
                {
                    failures.push(format!("{name}: refused input not dead-lettered: {out:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} messages failed in the pipeline:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
