//! MQTT connection settings: the rumqttc v5 options for a persistent,
//! manually acknowledged QoS 1 session (fixed client id, clean start off,
//! session expiry, receive maximum), TLS through rustls, credentials, and the
//! topic filters derived from the ingest routes.

use std::time::Duration;

use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};

use crate::config::{Config, Resolved};

/// Builds the client options. Reads the TLS files (checked to exist by
/// [`Config::resolve`]).
pub fn options(cfg: &Config, resolved: &Resolved) -> anyhow::Result<MqttOptions> {
    let m = &cfg.mqtt;
    let mut o = MqttOptions::new(
        resolved.client_id.clone(),
        resolved.broker.host.clone(),
        resolved.broker.port,
    );
    o.set_keep_alive(Duration::from_secs(m.keep_alive_s))
        // Persistent session: unacked messages survive our crash or restart.
        .set_clean_start(false)
        .set_session_expiry_interval(Some(m.session_expiry_s))
        .set_manual_acks(true)
        .set_receive_maximum(Some(m.receive_maximum))
        // rumqttc's default of 10 KiB would turn every larger payload into a
        // connection error and an endless redelivery loop.
        .set_max_packet_size(Some(m.max_packet_bytes))
        .set_connection_timeout(10);
    if let Some(user) = &m.username {
        let password = m.password.as_ref().map(|p| p.expose()).unwrap_or_default();
        o.set_credentials(user.clone(), password.to_owned());
    }
    if resolved.broker.tls {
        install_crypto_provider();
        let ca_path = m
            .ca_file
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("mqtt.ca_file is required with mqtts://"))?;
        let ca = std::fs::read(ca_path)
            .map_err(|e| anyhow::anyhow!("mqtt.ca_file {}: {e}", ca_path.display()))?;
        let client_auth = match (&m.client_cert, &m.client_key) {
            (Some(cert), Some(key)) => Some((
                std::fs::read(cert)
                    .map_err(|e| anyhow::anyhow!("mqtt.client_cert {}: {e}", cert.display()))?,
                std::fs::read(key)
                    .map_err(|e| anyhow::anyhow!("mqtt.client_key {}: {e}", key.display()))?,
            )),
            _ => None,
        };
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(o)
}

/// rustls needs one process-wide crypto provider; this build ships ring only.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The MQTT filters for `routes` (readings), the native `status`/`meta`
/// channels and the foreign formats' `status_routes`, `$share/<group>/`-prefixed
/// when the gateway is in a share group.
pub fn filters(
    routes: &[ingest::RouteConfig],
    status_routes: &[ingest::status::StatusRouteConfig],
    share_group: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in ingest::route::subscription_filters(routes)
        .into_iter()
        .chain(ingest::status::status_filters(status_routes))
    {
        let f = shared(f, share_group);
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// The filters among [`filters`] whose retained messages the gateway wants at
/// every subscribe: device state (native `status`/`meta`, the foreign formats'
/// wills), the last known state of each device. Readings filters never get
/// retained messages (a retained reading is not a new reading).
pub fn state_filters(
    status_routes: &[ingest::status::StatusRouteConfig],
    share_group: Option<&str>,
) -> Vec<String> {
    ingest::route::NATIVE_STATE_FILTERS
        .map(str::to_owned)
        .into_iter()
        .chain(ingest::status::status_filters(status_routes))
        .map(|f| shared(f, share_group))
        .collect()
}

/// `filter` as a shared subscription of `share_group`, if any.
fn shared(filter: String, share_group: Option<&str>) -> String {
    match share_group {
        Some(g) => format!("$share/{g}/{filter}"),
        None => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_become_shared_filters() {
        let routes = vec![
            ingest::RouteConfig::new("tele/{device}/SENSOR", ingest::Format::Tasmota),
            ingest::RouteConfig::new("tele/{x}/SENSOR", ingest::Format::Tasmota),
        ];
        let f = filters(&routes, &[], Some("g1"));
        assert_eq!(f[0], "$share/g1/tele/+/SENSOR");
        assert_eq!(f.iter().filter(|x| x.contains("tele/")).count(), 1);
        assert!(f.contains(&"$share/g1/city/+/+/+/status".to_owned()));
        assert!(filters(&routes, &[], None).contains(&"tele/+/SENSOR".to_owned()));
        let status = ingest::status::default_status_routes();
        let all = filters(&routes, &status, None);
        assert!(all.contains(&"tele/+/LWT".to_owned()) && all.contains(&"+/status".to_owned()));
        assert_eq!(
            state_filters(&status, Some("g")),
            [
                "$share/g/city/+/+/+/status",
                "$share/g/city/+/+/+/meta",
                "$share/g/tele/+/LWT",
                "$share/g/+/status"
            ]
        );
    }
}
