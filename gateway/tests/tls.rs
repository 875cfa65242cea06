//! The gateway over MQTT with TLS (rustls): a real Mosquitto TLS listener that
//! demands a client certificate, certificates made for the test with rcgen,
//! and username/password on top.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tests::{Mosquitto, MosquittoOptions, TlsListener};

#[test]
fn mutual_tls_with_credentials_delivers_readings() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let ca_key = KeyPair::generate().unwrap();
    // Distinct names: OpenSSL takes a certificate whose subject equals its
    // issuer for self-signed, and would refuse the client's as "unknown CA".
    let named = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let mut ca_params = named(Vec::new(), "gateway test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = named(vec!["127.0.0.1".to_owned()], "mosquitto")
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = named(vec!["gateway".to_owned()], "gateway")
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let ca_pem = write("ca.pem", ca.pem());
    let mut tls = TlsListener::new(
        &ca_pem,
        write("server.pem", server.pem()),
        write("server.key", server_key.serialize_pem()),
    );
    tls.require_certificate = true;
    let broker = Mosquitto::start_with(
        MosquittoOptions::default()
            .with_tls(tls)
            .with_user("gw", "gw-secret-pw"),
    )
    .unwrap();
    let tls_port = broker.tls_port().unwrap();

    let mut opts = GatewayOptions::new(&broker, "tls-gw", &dir.path().join("data"));
    opts.mqtt_url = Some(format!("mqtts://127.0.0.1:{tls_port}"));
    opts.extra = vec![
        "--ca-file".into(),
        ca_pem.display().to_string(),
        "--client-cert".into(),
        write("client.pem", client.pem()).display().to_string(),
        "--client-key".into(),
        write("client.key", client_key.serialize_pem())
            .display()
            .to_string(),
        "--mqtt-username".into(),
        "gw".into(),
        "--mqtt-password".into(),
        "gw-secret-pw".into(),
    ];
    let mut gw = Gateway::start(&opts);
    // Devices publish on the plain listener; the gateway reads over TLS.
    let load = tasmota(100, 2, "tls-");
    publish(&broker, &load, 0..100, "pub-tls");
    wait_until(
        "500 readings over TLS",
        Duration::from_secs(60),
        || reading_count(&gw.data_dir),
        |n| *n == 500,
    );
    assert!(gw.terminate().expect("exited").success());
    assert!(
        !gw.log_text().contains("gw-secret-pw"),
        "the password must never be logged"
    );
}
