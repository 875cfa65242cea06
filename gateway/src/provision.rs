//! `gateway devices provision`: turns the device registry
//! ([`ingest::registry`]) into Mosquitto's password file and ACL file.
//!
//! - `passwd`: one `username:$7$101$<salt>$<hash>` line per account
//!   (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte random salt, standard
//!   base64 with padding: what `mosquitto_passwd` writes). Mode 0600.
//! - `acl`: each device may write exactly its own topics, derived from the
//!   routes of its format (`city/<district>/<kind>/<id>/up|status|meta` for
//!   SenML, `tele/<id>/SENSOR` for Tasmota, ...) and read nothing; the
//!   gateway's account may read every filter the gateway subscribes to.
//!
//! Both files are written to a temporary file in the same directory, synced
//! and renamed over the old one, so a broker reloading them never sees half
//! a file. Passwords are never printed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ingest::Format;
use ingest::registry::{Credential, Device, Registry};
use ingest::route::{RouteConfig, subscription_filters};
use sha2::Sha512;

use crate::cli::ProvisionArgs;

/// PBKDF2 iterations of Mosquitto's `$7$` hashes (`mosquitto_passwd`'s default).
pub const HASH_ITERATIONS: u32 = 101;
/// Salt length of Mosquitto's `$7$` hashes.
pub const SALT_LEN: usize = 12;
/// SHA-512 output length.
const HASH_LEN: usize = 64;

/// Hashes `password` in Mosquitto's `$7$` format with a fresh random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no random salt: {e}"))?;
    Ok(hash_with_salt(password, &salt, HASH_ITERATIONS))
}

/// Hashes `password` in Mosquitto's `$7$` format with a given salt.
pub fn hash_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out);
    format!("$7${iterations}${}${}", B64.encode(salt), B64.encode(out))
}

/// Whether `password` matches a `$7$` hash (recomputed from its salt and
/// iteration count).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let fields: Vec<&str> = hash.split('$').collect();
    let ["", "7", iterations, salt, _] = fields.as_slice() else {
        return false;
    };
    let (Ok(iterations), Ok(salt)) = (iterations.parse::<u32>(), B64.decode(salt)) else {
        return false;
    };
    hash_with_salt(password, &salt, iterations) == hash
}

/// The topic filters `device` may publish to under `routes`: each route of
/// its format with the captures filled in from the registry entry
/// (`{device}` and `{node}` are the id, `{name}` any level), plus the native
/// `status` and `meta` channels for SenML devices. A route whose topic does
/// not name the device (`telegraf/#`) is narrowed to `<prefix>/<id>/#`.
pub fn device_topics(device: &Device, routes: &[RouteConfig]) -> Result<Vec<String>, String> {
    let mut topics: Vec<String> = Vec::new();
    for route in routes.iter().filter(|r| r.format == device.format) {
        let mut names_device = false;
        let mut levels: Vec<String> = Vec::new();
        for level in route.pattern.split('/') {
            let filled = match level {
                "{device}" | "{node}" => {
                    names_device = true;
                    device.id.as_str()
                }
                "{district}" => device.district.as_str(),
                "{kind}" => device.kind.as_str(),
                "{name}" => "+",
                "{apikey}" => device.apikey.as_deref().ok_or_else(|| {
                    format!(
                        "device `{}`: route `{}` needs an apikey",
                        device.id, route.pattern
                    )
                })?,
                other => other,
            };
            levels.push(filled.to_owned());
        }
        if !names_device {
            if levels.last().map(String::as_str) == Some("#") {
                levels.pop();
                levels.push(device.id.clone());
                levels.push("#".into());
            } else {
                return Err(format!(
                    "device `{}`: route `{}` ({}) names no device ({{device}} or {{node}}) \
                     and does not end in `#`, so its topics cannot be limited to one device",
                    device.id, route.pattern, route.format
                ));
            }
        }
        topics.push(levels.join("/"));
    }
    if topics.is_empty() {
        return Err(format!(
            "device `{}`: no ingest route has format {}, so it has no topic to publish to",
            device.id, device.format
        ));
    }
    if device.format == Format::Senml {
        for channel in ["status", "meta"] {
            topics.push(format!(
                "city/{}/{}/{}/{channel}",
                device.district,
                device.kind.as_str(),
                device.id
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    topics.retain(|t| seen.insert(t.clone()));
    Ok(topics)
}

/// The password file's text. Plain passwords are hashed with fresh salts.
pub fn passwd_text(registry: &Registry) -> anyhow::Result<String> {
    let mut out = String::new();
    let accounts = std::iter::once((&registry.gateway.username, &registry.gateway.credential))
        .chain(
            registry
                .devices
                .iter()
                .map(|d| (&d.username, &d.credential)),
        );
    for (user, credential) in accounts {
        let hash = match credential {
            Credential::Password(p) => hash_password(p)?,
            Credential::Hash(h) => h.clone(),
        };
        let _ = writeln!(out, "{user}:{hash}");
    }
    Ok(out)
}

/// The ACL file's text.
pub fn acl_text(
    registry: &Registry,
    routes: &[RouteConfig],
    publishes: &[String],
) -> Result<String, String> {
    let mut out = String::from(
        "# Written by `gateway devices provision` from the device registry; edits are lost.\n\
         # Devices write their own topics only and read nothing; the gateway reads every\n\
         # routed topic (a `$share/<group>/<filter>` subscription is checked against <filter>)\n\
         # and writes its alerts and the public AQI feed.\n",
    );
    let _ = writeln!(out, "\nuser {}", registry.gateway.username);
    for filter in subscription_filters(routes) {
        let _ = writeln!(out, "topic read {filter}");
    }
    for filter in publishes {
        let _ = writeln!(out, "topic write {filter}");
    }
    for d in &registry.devices {
        let _ = writeln!(
            out,
            "\n# {} ({}, {}, {})\nuser {}",
            d.id, d.kind, d.district, d.format, d.username
        );
        for topic in device_topics(d, routes)? {
            let _ = writeln!(out, "topic write {topic}");
        }
    }
    Ok(out)
}

/// Writes `text` to `path` atomically: a temporary file with `mode` in the
/// same directory, synced, then renamed over `path`.
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What `provision` wrote.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Devices in the registry.
    pub devices: usize,
    /// The password file.
    pub passwd: PathBuf,
    /// The ACL file.
    pub acl: PathBuf,
}

/// Reads the registry, and writes `<dir>/passwd` and `<dir>/acl` for the
/// given routes, the gateway account writing `publishes` (topic filters).
pub fn provision(
    registry: &Path,
    dir: &Path,
    routes: &[RouteConfig],
    publishes: &[String],
) -> anyhow::Result<Provisioned> {
    let registry = Registry::from_path(registry)?;
    // The ACL first: it is where a registry that does not fit the routes fails,
    // before anything is written.
    let acl = acl_text(&registry, routes, publishes).map_err(anyhow::Error::msg)?;
    let passwd = passwd_text(&registry)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = Provisioned {
        devices: registry.devices.len(),
        passwd: dir.join("passwd"),
        acl: dir.join("acl"),
    };
    write_atomic(&out.passwd, &passwd, 0o600)?;
    write_atomic(&out.acl, &acl, 0o600)?;
    Ok(out)
}

/// `gateway devices provision`.
pub fn run(args: &ProvisionArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => crate::config::Config::from_file(path)?,
        None => crate::config::Config::default(),
    };
    let publishes = config.publish_filters();
    let ingest = config.ingest;
    // A device also writes its format's availability topic (Tasmota's LWT, ESPHome's
    // status), which the gateway reads.
    let mut routes = ingest.routes;
    routes.extend(
        ingest
            .status_routes
            .iter()
            .map(|s| RouteConfig::new(s.pattern.clone(), s.format)),
    );
    let done = provision(&args.registry, &args.mosquitto_dir, &routes, &publishes)?;
    println!(
        "provisioned {} device(s) and the gateway account from {}\n\
         wrote {} (mode 0600)\n\
         wrote {} (mode 0600)\n\
         point the broker at them: password_file and acl_file in mosquitto.conf, or\n\
         broker.password_file and broker.acl_file for the bundled broker",
        done.devices,
        args.registry.display(),
        done.passwd.display(),
        done.acl.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::topic::DeviceKind;

    fn device(id: &str, format: Format, apikey: Option<&str>) -> Device {
        Device {
            id: id.into(),
            kind: DeviceKind::Weather,
            district: "tay-ho".into(),
            format,
            username: id.into(),
            credential: Credential::Password("x".into()),
            apikey: apikey.map(Into::into),
        }
    }

    #[test]
    fn hashes_have_mosquittos_shape_and_verify() {
        let h = hash_password("s3cret pass").unwrap();
        let fields: Vec<&str> = h.split('$').collect();
        assert_eq!(fields[..3], ["", "7", "101"], "{h}");
        assert_eq!(B64.decode(fields[3]).unwrap().len(), SALT_LEN);
        assert_eq!(B64.decode(fields[4]).unwrap().len(), HASH_LEN);
        assert!(fields[4].ends_with("=="), "padded base64: {h}");
        assert!(verify_password("s3cret pass", &h));
        assert!(!verify_password("s3cret pasS", &h));
        assert_ne!(
            h,
            hash_password("s3cret pass").unwrap(),
            "fresh salt each time"
        );
        ingest::registry::check_hash(&h).unwrap();
    }

    #[test]
    fn hash_matches_a_known_pbkdf2_sha512_value() {
        // RFC 6070-style vector for PBKDF2-HMAC-SHA512 ("password", "salt", 1 round),
        // as published with the test vectors of several implementations.
        let h = hash_with_salt("password", b"salt", 1);
        let hash = B64.decode(h.rsplit('$').next().unwrap()).unwrap();
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            hex.starts_with("867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"),
            "{hex}"
        );
    }

    #[test]
    fn each_format_gets_its_own_topics_from_the_default_routes() {
        let routes = ingest::default_routes();
        let t = |d: &Device| device_topics(d, &routes).unwrap();
        assert_eq!(
            t(&device("ws-1", Format::Senml, None)),
            [
                "city/tay-ho/weather/ws-1/up",
                "city/tay-ho/weather/ws-1/status",
                "city/tay-ho/weather/ws-1/meta"
            ]
        );
        assert_eq!(
            t(&device("t-1", Format::Tasmota, None)),
            ["tele/t-1/SENSOR"]
        );
        assert_eq!(
            t(&device("node-1", Format::Esphome, None)),
            ["node-1/sensor/+/state"]
        );
        assert_eq!(
            t(&device("ul-1", Format::Ultralight, Some("K1"))),
            ["/K1/ul-1/attrs", "/ul/K1/ul-1/attrs"]
        );
        assert_eq!(
            t(&device("lp-1", Format::LineProtocol, None)),
            ["telegraf/lp-1/#"]
        );
        let only_senml = vec![RouteConfig::new(
            "city/{district}/{kind}/{device}/up",
            Format::Senml,
        )];
        assert!(device_topics(&device("t-1", Format::Tasmota, None), &only_senml).is_err());
        let vague = vec![RouteConfig::new("sensors/+/data", Format::Tasmota)];
        let e = device_topics(&device("t-1", Format::Tasmota, None), &vague).unwrap_err();
        assert!(e.contains("cannot be limited"), "{e}");
    }
}
