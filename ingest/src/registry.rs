//! The device registry: which devices exist, where they are, which payload
//! format (route) owns each, and the broker credentials each connects with.
//! `gateway devices provision` turns it into Mosquitto's password and ACL
//! files; the pipeline can use it to tell which format owns a device.
//!
//! ```toml
//! [gateway]                      # the gateway's own broker account (reads every route)
//! username = "gateway"
//! password = "change-me"         # or password_hash = "$7$101$...$..."
//!
//! [[device]]
//! id = "aq-0001"                 # slug: a-z 0-9 - _
//! kind = "airquality"            # airquality, weather, noise, wifi
//! district = "ba-dinh"           # slug
//! format = "senml"               # senml, tasmota, esphome, ultralight, line-protocol
//! username = "aq-0001"           # optional, defaults to the id
//! password = "..."               # or password_hash, Mosquitto's `$7$` format
//! # apikey = "key123"            # UltraLight devices only, and required for them
//! ```
//!
//! Errors name the entry and key: `device[3].district: invalid slug: ...`
//! (entries counted from 0, in file order).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use schemas::topic::{DeviceKind, check_slug};

use crate::route::Format;

/// Longest username accepted (Mosquitto has no hard limit; this keeps files sane).
pub const MAX_USERNAME_LEN: usize = 128;
/// Longest UltraLight API key accepted.
pub const MAX_APIKEY_LEN: usize = 64;

/// How an account proves itself to the broker.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A plain password, hashed when the password file is written.
    Password(String),
    /// A hash already in Mosquitto's `$7$<iterations>$<salt>$<hash>` format.
    Hash(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password(<redacted>)"),
            Self::Hash(_) => f.write_str("Hash(<redacted>)"),
        }
    }
}

/// The gateway's own broker account (`[gateway]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAccount {
    /// Broker username.
    pub username: String,
    /// Its credential.
    pub credential: Credential,
}

/// One `[[device]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device id (slug), as it appears in topics and store tags.
    pub id: String,
    /// Device kind.
    pub kind: DeviceKind,
    /// District slug.
    pub district: String,
    /// The payload format, i.e. which routes own this device's topics.
    pub format: Format,
    /// Broker username; the id unless set.
    pub username: String,
    /// Its credential.
    pub credential: Credential,
    /// UltraLight API key (the first topic level of UltraLight devices).
    pub apikey: Option<String>,
}

/// A parsed and checked registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// The gateway's account.
    pub gateway: GatewayAccount,
    /// The devices, in file order.
    pub devices: Vec<Device>,
}

/// Why a registry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("cannot read device registry {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML; the parser's message quotes the line.
    #[error("device registry is not valid TOML: {0}")]
    Syntax(String),
    /// A key is missing, unknown or out of its domain.
    #[error("{key}: {message}")]
    Invalid {
        /// Where: `device[3].district`, `gateway.username`, ...
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

type Table = toml::map::Map<String, toml::Value>;

impl Registry {
    /// Reads and checks a TOML registry file.
    pub fn from_path(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks TOML text.
    pub fn from_toml(text: &str) -> Result<Self, RegistryError> {
        let root: Table = toml::from_str(text).map_err(|e| RegistryError::Syntax(e.to_string()))?;
        for key in root.keys() {
            if key != "gateway" && key != "device" {
                return Err(invalid(
                    key.as_str(),
                    "unknown key (expected a [gateway] table and [[device]] entries)",
                ));
            }
        }
        let gateway = match root.get("gateway") {
            None => {
                return Err(invalid(
                    "gateway",
                    "missing: a [gateway] table with the gateway's username and password",
                ));
            }
            Some(toml::Value::Table(t)) => parse_gateway(t)?,
            Some(_) => return Err(invalid("gateway", "must be a table ([gateway])")),
        };
        let entries: &[toml::Value] = match root.get("device") {
            None => &[],
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                return Err(invalid(
                    "device",
                    "must be an array of tables ([[device]] entries)",
                ));
            }
        };
        let mut devices = Vec::with_capacity(entries.len());
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut users: HashMap<String, String> = HashMap::new();
        users.insert(gateway.username.clone(), "gateway.username".into());
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("device[{i}]");
            let toml::Value::Table(t) = entry else {
                return Err(invalid(at, "must be a table ([[device]])"));
            };
            let d = parse_device(&at, t)?;
            if let Some(first) = ids.insert(d.id.clone(), i) {
                return Err(invalid(
                    format!("{at}.id"),
                    format!("duplicate id `{}` (already device[{first}])", d.id),
                ));
            }
            if let Some(first) = users.insert(d.username.clone(), format!("{at}.username")) {
                return Err(invalid(
                    format!("{at}.username"),
                    format!(
                        "duplicate username `{}` (already {first}); each account must be distinct",
                        d.username
                    ),
                ));
            }
            devices.push(d);
        }
        Ok(Self { gateway, devices })
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }
}

fn check_keys(at: &str, t: &Table, known: &[&str]) -> Result<(), RegistryError> {
    for key in t.keys() {
        if !known.contains(&key.as_str()) {
            return Err(invalid(
                format!("{at}.{key}"),
                format!("unknown key (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn string<'t>(at: &str, t: &'t Table, key: &str) -> Result<Option<&'t str>, RegistryError> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(
            format!("{at}.{key}"),
            format!("must be a string, not {}", other.type_str()),
        )),
    }
}

fn required<'t>(at: &str, t: &'t Table, key: &str) -> Result<&'t str, RegistryError> {
    string(at, t, key)?.ok_or_else(|| invalid(format!("{at}.{key}"), "missing"))
}

fn check_username(key: &str, name: &str) -> Result<(), RegistryError> {
    if name.is_empty() || name.len() > MAX_USERNAME_LEN {
        return Err(invalid(
            key,
            format!("must be 1 to {MAX_USERNAME_LEN} bytes"),
        ));
    }
    // ':' separates user and hash in the password file; whitespace and control
    // characters would break the ACL file's `user` lines.
    if name
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            key,
            format!("`{name}`: no ':', spaces or control characters allowed"),
        ));
    }
    Ok(())
}

fn credential(at: &str, t: &Table) -> Result<Credential, RegistryError> {
    match (string(at, t, "password")?, string(at, t, "password_hash")?) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{at}.password_hash"),
            "set either password or password_hash, not both",
        )),
        (None, None) => Err(invalid(
            format!("{at}.password"),
            "missing: set password (hashed at provisioning) or password_hash ($7$ format)",
        )),
        (Some(p), None) => {
            if p.is_empty() {
                return Err(invalid(format!("{at}.password"), "empty"));
            }
            if p.contains(['\n', '\r', '\0']) {
                return Err(invalid(
                    format!("{at}.password"),
                    "no line breaks or NUL characters allowed",
                ));
            }
            Ok(Credential::Password(p.to_owned()))
        }
        (None, Some(h)) => {
            check_hash(h).map_err(|m| invalid(format!("{at}.password_hash"), m))?;
            Ok(Credential::Hash(h.to_owned()))
        }
    }
}

/// Checks the shape of a Mosquitto `$7$<iterations>$<salt>$<hash>` hash
/// (base64 fields; the values themselves are the broker's business).
pub fn check_hash(h: &str) -> Result<(), String> {
    let fields: Vec<&str> = h.split('$').collect();
    let b64 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    };
    match fields.as_slice() {
        ["", "7", iterations, salt, hash]
            if iterations.parse::<u32>().is_ok_and(|n| n > 0) && b64(salt) && b64(hash) =>
        {
            Ok(())
        }
        _ => Err(
            "not a Mosquitto `$7$<iterations>$<base64 salt>$<base64 hash>` hash \
                  (as mosquitto_passwd writes it)"
                .into(),
        ),
    }
}

fn parse_gateway(t: &Table) -> Result<GatewayAccount, RegistryError> {
    let at = "gateway";
    check_keys(at, t, &["username", "password", "password_hash"])?;
    let username = required(at, t, "username")?;
    check_username("gateway.username", username)?;
    Ok(GatewayAccount {
        username: username.to_owned(),
        credential: credential(at, t)?,
    })
}

fn parse_device(at: &str, t: &Table) -> Result<Device, RegistryError> {
    check_keys(
        at,
        t,
        &[
            "id",
            "kind",
            "district",
            "format",
            "username",
            "password",
            "password_hash",
            "apikey",
        ],
    )?;
    let id = required(at, t, "id")?;
    check_slug(id).map_err(|e| invalid(format!("{at}.id"), format!("`{id}`: {e}")))?;
    let kind = required(at, t, "kind")?;
    let kind = DeviceKind::parse(kind).ok_or_else(|| {
        let known: Vec<&str> = DeviceKind::ALL.iter().map(|k| k.as_str()).collect();
        invalid(
            format!("{at}.kind"),
            format!("`{kind}` is not a device kind ({})", known.join(", ")),
        )
    })?;
    let district = required(at, t, "district")?;
    check_slug(district)
        .map_err(|e| invalid(format!("{at}.district"), format!("`{district}`: {e}")))?;
    let format = required(at, t, "format")?;
    let format = Format::parse(format).ok_or_else(|| {
        let known: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
        invalid(
            format!("{at}.format"),
            format!("`{format}` is not a format ({})", known.join(", ")),
        )
    })?;
    let username = string(at, t, "username")?.unwrap_or(id);
    check_username(&format!("{at}.username"), username)?;
    let credential = credential(at, t)?;
    let apikey = string(at, t, "apikey")?;
    match (format, apikey) {
        (Format::Ultralight, None) => {
            return Err(invalid(
                format!("{at}.apikey"),
                "missing: UltraLight devices publish under /<apikey>/<id>/attrs",
            ));
        }
        (Format::Ultralight, Some(k)) => {
            let ok = !k.is_empty()
                && k.len() <= MAX_APIKEY_LEN
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(invalid(
                    format!("{at}.apikey"),
                    format!("`{k}`: must be 1 to {MAX_APIKEY_LEN} of A-Z, a-z, 0-9, '-', '_'"),
                ));
            }
        }
        (_, Some(_)) => {
            return Err(invalid(
                format!("{at}.apikey"),
                format!("only UltraLight devices have an apikey (this one is {format})"),
            ));
        }
        (_, None) => {}
    }
    Ok(Device {
        id: id.to_owned(),
        kind,
        district: district.to_owned(),
        format,
        username: username.to_owned(),
        credential,
        apikey: apikey.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "[gateway]\nusername = \"gw\"\npassword = \"gw-secret\"\n";

    fn dev(extra: &str) -> String {
        format!(
            "{GW}[[device]]\nid = \"aq-1\"\nkind = \"airquality\"\ndistrict = \"ba-dinh\"\n\
             format = \"senml\"\npassword = \"p1\"\n{extra}"
        )
    }

    fn err(text: &str) -> String {
        Registry::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_registry_parses_with_defaults() {
        let text = format!(
            "{}[[device]]\nid = \"ul-9\"\nkind = \"weather\"\ndistrict = \"tay-ho\"\n\
             format = \"ultralight\"\nusername = \"ul-user\"\n\
             password_hash = \"$7$101$c2FsdHNhbHRzYWx0$aGFzaA==\"\napikey = \"Key123\"\n",
            dev("")
        );
        let r = Registry::from_toml(&text).unwrap();
        assert_eq!(r.gateway.username, "gw");
        assert_eq!(r.devices.len(), 2);
        let aq = r.device("aq-1").unwrap();
        assert_eq!(aq.username, "aq-1");
        assert_eq!(aq.kind, DeviceKind::AirQuality);
        assert_eq!(aq.format, Format::Senml);
        assert_eq!(aq.credential, Credential::Password("p1".into()));
        let ul = r.device("ul-9").unwrap();
        assert_eq!(ul.apikey.as_deref(), Some("Key123"));
        assert!(matches!(ul.credential, Credential::Hash(_)));
        assert!(!format!("{r:?}").contains("p1"), "passwords are redacted");
    }

    #[test]
    fn bad_entries_are_named_by_index_and_key() {
        let second = |body: &str| {
            format!(
                "{}[[device]]\nid = \"b\"\nkind = \"noise\"\ndistrict = \"x\"\nformat = \"tasmota\"\n\
                 password = \"q\"\n{body}",
                dev("")
            )
        };
        let e = err(&second("").replace("district = \"x\"", "district = \"Ba Dinh\""));
        assert!(e.starts_with("device[1].district: `Ba Dinh`"), "{e}");
        let e = err(&second("").replace("kind = \"noise\"", "kind = \"radar\""));
        assert!(
            e.starts_with("device[1].kind:") && e.contains("airquality"),
            "{e}"
        );
        let e = err(&second("").replace("format = \"tasmota\"", "format = \"xml\""));
        assert!(
            e.starts_with("device[1].format:") && e.contains("senml"),
            "{e}"
        );
        let e = err(&second("").replace("id = \"b\"", "id = \"aq-1\""));
        assert!(e.starts_with("device[1].id: duplicate id `aq-1`"), "{e}");
        let e = err(&second("username = \"aq-1\"\n"));
        assert!(
            e.starts_with("device[1].username: duplicate username"),
            "{e}"
        );
        let e = err(&second("username = \"gw\"\n"));
        assert!(e.contains("already gateway.username"), "{e}");
        let e = err(&second("").replace("password = \"q\"\n", ""));
        assert!(e.starts_with("device[1].password: missing"), "{e}");
        let e = err(&second("password_hash = \"$7$101$a$b\"\n"));
        assert!(e.starts_with("device[1].password_hash: set either"), "{e}");
        let e = err(&second("apikey = \"k\"\n"));
        assert!(e.starts_with("device[1].apikey: only UltraLight"), "{e}");
        let e = err(&second("colour = \"red\"\n"));
        assert!(e.starts_with("device[1].colour: unknown key"), "{e}");
        let e = err(&second("username = \"a:b\"\n"));
        assert!(e.starts_with("device[1].username:"), "{e}");
        let e = err(&second("").replace("format = \"tasmota\"", "format = \"ultralight\""));
        assert!(e.starts_with("device[1].apikey: missing"), "{e}");
        let e = err(&second("").replace("id = \"b\"", "id = 7"));
        assert!(e.starts_with("device[1].id: must be a string"), "{e}");
        let e = err(&dev("").replace("password = \"p1\"", "password_hash = \"plain\""));
        assert!(
            e.starts_with("device[0].password_hash: not a Mosquitto"),
            "{e}"
        );
    }

    #[test]
    fn the_gateway_account_is_required_and_checked() {
        let no_gw = dev("").replace(GW, "");
        assert!(err(&no_gw).starts_with("gateway: missing"));
        let e = err(&dev("").replace("username = \"gw\"\n", ""));
        assert!(e.starts_with("gateway.username: missing"), "{e}");
        let e = err(&format!("{}[extra]\n", dev("")));
        assert!(e.starts_with("extra: unknown key"), "{e}");
        assert!(err("[[device]\n").contains("not valid TOML"));
    }

    #[test]
    fn hash_shapes() {
        assert!(check_hash("$7$101$c2FsdA==$aGFzaA==").is_ok());
        for bad in [
            "",
            "$6$101$a$b",
            "$7$x$a$b",
            "$7$101$$b",
            "$7$101$a$b$c",
            "$7$0$a$b",
        ] {
            assert!(check_hash(bad).is_err(), "{bad}");
        }
    }
}
