//! Authentication of the HTTP API against the real gateway binary and a real Mosquitto:
//! bearer tokens (flag and token file), 401s with `WWW-Authenticate`, the login page and its
//! session cookie, `/logout`, open health probes, `/metrics` open or behind the token, the
//! refusal to serve an open API on a non-loopback address, and tokens kept out of the log
//! and of `check-config`; and the same for the query-only node (`gateway serve`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{Gateway, GatewayOptions, gateway_bin, http_get, serial, wait_until};
use tests::{ChildGuard, Mosquitto};

const TOKEN: &str = "flag-token-5f2c9a7e41d8b3c6";
const FILE_TOKEN: &str = "file-token-0a9e8d7c6b5a4f3e";

/// An answer: status, lower-cased header lines, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request on loopback with extra headers and an optional form body.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], form: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(form);
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(port, "GET", path, headers, "")
}

fn assert_unauthorized(a: &Answer, what: &str) {
    assert_eq!(a.status, 401, "{what}: {}", a.body);
    assert!(
        a.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{what}: no WWW-Authenticate: Bearer in {:?}",
        a.headers
    );
    let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
}

#[test]
fn api_and_dashboard_need_a_token_or_a_session() {
    let _serial = serial();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(
        &token_file,
        format!("# the next token, for rotation\n\n{FILE_TOKEN}\n"),
    )
    .unwrap();
    let mut opts = GatewayOptions::new(&broker, "auth-gw", &dir.path().join("data"));
    opts.extra = vec![
        "--http-token".into(),
        TOKEN.into(),
        "--http-token-file".into(),
        token_file.display().to_string(),
    ];
    let mut gw = Gateway::start(&opts);
    let port = gw.http_port;
    let bearer = format!("Bearer {TOKEN}");

    // No credentials: 401 with WWW-Authenticate and a JSON error, the OpenAPI document too.
    for path in ["/api/devices", "/api/stats", "/api/openapi.json"] {
        assert_unauthorized(&get(port, path, &[]), path);
    }
    // The right token (from the flag or the file): 200.
    let ok = get(port, "/api/devices", &[("Authorization", bearer.as_str())]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    serde_json::from_str::<serde_json::Value>(&ok.body).unwrap();
    let file_bearer = format!("Bearer {FILE_TOKEN}");
    let ok = get(
        port,
        "/api/openapi.json",
        &[("Authorization", file_bearer.as_str())],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("/api/devices"));
    // A wrong token, a prefix of the right one, or the token as a cookie: 401.
    for wrong in [
        "Bearer not-the-token-0123456789".to_owned(),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Basic {TOKEN}"),
    ] {
        assert_unauthorized(
            &get(port, "/api/devices", &[("Authorization", wrong.as_str())]),
            &wrong,
        );
    }
    let forged = format!("gateway_session={TOKEN}");
    assert_unauthorized(
        &get(port, "/api/devices", &[("Cookie", forged.as_str())]),
        "forged",
    );

    // Health probes and, by default, /metrics stay open.
    assert_eq!(http_get(port, "/health/live").unwrap().0, 200);
    assert_eq!(http_get(port, "/health/ready").unwrap().0, 200);
    assert_eq!(http_get(port, "/health").unwrap().0, 200);
    let metrics = get(port, "/metrics", &[]);
    assert_eq!(metrics.status, 200);

    // A browser without a session is sent to the login page; a script gets a 401.
    let html = [("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    let page = get(port, "/", &html);
    assert!(matches!(page.status, 302 | 303 | 307), "{}", page.status);
    assert_eq!(page.header("location"), Some("/login"));
    assert_unauthorized(&get(port, "/", &[]), "dashboard without Accept: text/html");
    assert_unauthorized(&get(port, "/assets/index.js", &[]), "asset");
    let login = get(port, "/login", &html);
    assert_eq!(login.status, 200);
    assert!(login.body.contains("name=\"token\""), "{}", login.body);

    // A wrong token at the login: no cookie.
    let refused = request(
        port,
        "POST",
        "/login",
        &[],
        "token=not-the-token-0123456789",
    );
    assert_eq!(refused.status, 401);
    assert!(
        refused.header("set-cookie").is_none(),
        "{:?}",
        refused.headers
    );

    // The right token: a session cookie (not the token), HttpOnly and SameSite=Strict, and
    // a redirect to the dashboard.
    let accepted = request(port, "POST", "/login", &[], &format!("token={TOKEN}"));
    assert!(
        matches!(accepted.status, 302 | 303),
        "{} {}",
        accepted.status,
        accepted.body
    );
    assert_eq!(accepted.header("location"), Some("/"));
    let set_cookie = accepted.header("set-cookie").unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains(TOKEN), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().trim().to_owned();
    assert!(cookie.starts_with("gateway_session="), "{cookie}");

    let page = get(port, "/", &[html[0], ("Cookie", cookie.as_str())]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<html") || page.body.contains("<!doctype"),
        "{}",
        page.body
    );
    let api = get(port, "/api/devices", &[("Cookie", cookie.as_str())]);
    assert_eq!(api.status, 200, "{}", api.body);

    // Logout ends the session on the server, not only in the browser.
    let out = get(port, "/logout", &[("Cookie", cookie.as_str())]);
    assert!(matches!(out.status, 302 | 303), "{}", out.status);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "{:?}",
        out.headers
    );
    assert_unauthorized(
        &get(port, "/api/devices", &[("Cookie", cookie.as_str())]),
        "after logout",
    );

    assert!(gw.terminate().expect("exited").success());
    let log = gw.log_text();
    assert!(log.contains("require a token"), "{log}");
    for secret in [TOKEN, FILE_TOKEN] {
        assert!(!log.contains(secret), "a token reached the log:\n{log}");
    }
}

#[test]
fn metrics_can_require_the_token() {
    let _serial = serial();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = GatewayOptions::new(&broker, "auth-metrics-gw", &dir.path().join("data"));
    opts.extra = vec![
        "--http-token".into(),
        TOKEN.into(),
        "--metrics-require-token".into(),
    ];
    let mut gw = Gateway::start(&opts);
    let port = gw.http_port;
    assert_unauthorized(&get(port, "/metrics", &[]), "/metrics");
    let bearer = format!("Bearer {TOKEN}");
    let metrics = get(port, "/metrics", &[("Authorization", bearer.as_str())]);
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("# TYPE"), "{}", metrics.body);
    assert_eq!(http_get(port, "/health/live").unwrap().0, 200);
    assert!(gw.terminate().expect("exited").success());
    assert!(!gw.log_text().contains(TOKEN));
}

#[test]
fn an_open_api_on_a_public_address_is_refused_unless_insecure() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = tests::free_port().unwrap();
    let listen = format!("0.0.0.0:{port}");
    let base = [
        "run",
        "--mqtt",
        "mqtt://127.0.0.1:9",
        "--data-dir",
        data.to_str().unwrap(),
        "--http",
        &listen,
    ];
    let out = Command::new(gateway_bin())
        .args(base)
        .env_remove("GATEWAY_HTTP_TOKEN")
        .env_remove("GATEWAY_HTTP_INSECURE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for needed in ["not a loopback address", "--http-token", "--http-insecure"] {
        assert!(text.contains(needed), "the message lacks {needed}: {text}");
    }
    assert!(!data.exists(), "nothing starts before the check");

    // With --http-insecure it starts (and serves the open API). Readiness needs the
    // broker, so liveness is what is awaited: the server is up.
    let log = dir.path().join("insecure.log");
    let mut cmd = Command::new(gateway_bin());
    cmd.args(base)
        .arg("--http-insecure")
        .env("RUST_LOG", "info");
    let mut child = ChildGuard::spawn("gateway", &mut cmd, &log).unwrap();
    wait_until(
        "the gateway with --http-insecure serves /health/live (or exits)",
        Duration::from_secs(30),
        || {
            let exited = child.try_wait().unwrap();
            (exited, http_get(port, "/health/live").map(|(s, _)| s))
        },
        |(exited, live)| exited.is_some() || *live == Some(200),
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("are open"), "{text}");
    child.kill().unwrap();
}

#[test]
fn check_config_redacts_the_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(&token_file, format!("{FILE_TOKEN}\n")).unwrap();
    let out = Command::new(gateway_bin())
        .args([
            "check-config",
            "--http",
            "0.0.0.0:8080",
            "--http-token-file",
            token_file.to_str().unwrap(),
        ])
        .env(
            "GATEWAY_HTTP_TOKEN",
            format!("{TOKEN},second-token-0123456789"),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    for secret in [TOKEN, FILE_TOKEN, "second-token-0123456789"] {
        assert!(
            !text.contains(secret),
            "check-config printed a token:\n{text}"
        );
    }
    // Both tokens of the variable and the file's count.
    assert_eq!(
        text.matches("<redacted>").count(),
        2 + 3,
        "two in http.tokens, three resolved:\n{text}"
    );
}

/// `gateway serve`, the query-only node, behind the same authentication: the API and the
/// dashboard need the token, the health probes do not, an open API on a public address is
/// refused, and the token stays out of its log.
#[test]
fn the_query_only_node_needs_the_token_too() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = tests::VictoriaMetrics::start().unwrap();
    let port = tests::free_port().unwrap();
    let refused = Command::new(gateway_bin())
        .args(["serve", "--store", &store.url()])
        .args(["--http", &format!("0.0.0.0:{port}")])
        .env_remove("GATEWAY_HTTP_TOKEN")
        .env_remove("GATEWAY_HTTP_INSECURE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("--http-token"), "{text}");

    let log = dir.path().join("serve.log");
    // Credentials in the store URL (this store does not ask for them): never logged.
    let with_password = store
        .url()
        .replace("http://", "http://reader:store-pass-7f3a@");
    let mut cmd = Command::new(gateway_bin());
    cmd.args(["serve", "--store", &with_password])
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--http-token", TOKEN])
        .env("RUST_LOG", "info");
    let _serve = ChildGuard::spawn("gateway serve", &mut cmd, &log).unwrap();
    wait_until(
        "the query-only node is ready",
        Duration::from_secs(30),
        || http_get(port, "/health/ready").map(|(s, _)| s),
        |s| *s == Some(200),
    );
    for path in ["/api/devices", "/api/latest", "/"] {
        assert_unauthorized(&get(port, path, &[]), path);
    }
    let bearer = format!("Bearer {TOKEN}");
    let ok = get(port, "/api/devices", &[("Authorization", &bearer)]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let body: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert!(body["devices"].is_array(), "{body}");
    assert_eq!(get(port, "/health/live", &[]).status, 200);
    let health = get(port, "/health", &[]);
    assert_eq!(health.status, 200, "{}", health.body);
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(
        (health["role"].as_str(), health["ready"].as_bool()),
        (Some("query-only"), Some(true)),
        "{health}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("require a token"), "{text}");
    assert!(!text.contains(TOKEN), "the token is in the log: {text}");
    assert!(
        !text.contains("store-pass-7f3a"),
        "the store password is in the log: {text}"
    );
}
