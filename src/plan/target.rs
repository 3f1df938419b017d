//! Registry row -> probe target (pure). Everything a check needs is decided here, once per
//! registry load: the URL, the method, the timeout, the accepted statuses, extra headers and an
//! optional body assertion. A row that cannot be probed becomes an [`InvalidTarget`] whose
//! reason is recorded as an `invalid_target` failure; it never stops the other services.

use std::time::Duration;

use serde::Deserialize;
use sqlx::types::Json;

use crate::config::{ProbeConfig, StatusSet};
use crate::text::{echo, redact_url};

/// One `service_registry` row, as much of it as probing needs. Values are as stored: turning a
/// row into a probe target (and rejecting a bad one) is [`plan`]'s job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RegistryRow {
    pub service_type: String,
    pub port: i32,
    pub base_url: Option<String>,
    pub health_check_endpoint: String,
    pub service_config: Json<serde_json::Value>,
}

const MAX_URL_LEN: usize = 2048;
const MAX_ENDPOINT_LEN: usize = 255;
const MAX_HEADERS: usize = 32;
const MAX_BODY_CONTAINS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        }
    }
}

/// One service, ready to probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub service_type: String,
    pub url: url::Url,
    pub method: Method,
    pub timeout: Duration,
    pub expected_status: StatusSet,
    pub headers: Vec<(String, String)>,
    pub body_contains: Option<String>,
}

/// A registry row that cannot be probed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTarget {
    pub service_type: String,
    /// What the daemon would have probed, as far as it could tell.
    pub url: String,
    pub reason: String,
}

/// `service_config -> 'health'`: per-service overrides of the probe settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HealthOverrides {
    timeout: Option<String>,
    expected_status: Option<String>,
    method: Option<String>,
    /// Kept as JSON and checked by [`headers`], so that no serde error can echo a value.
    headers: Option<serde_json::Value>,
    body_contains: Option<String>,
}

/// Either kind of entry the scheduler runs: a probe, or a row that fails every check with its reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    Probe(Target),
    Invalid(InvalidTarget),
}

impl Planned {
    pub fn service_type(&self) -> &str {
        match self {
            Planned::Probe(t) => &t.service_type,
            Planned::Invalid(i) => &i.service_type,
        }
    }

    /// The URL as logs and output show it: its userinfo (if any) is `***`.
    pub fn url(&self) -> String {
        match self {
            Planned::Probe(t) => redact_url(t.url.as_str()).into_owned(),
            Planned::Invalid(i) => i.url.clone(),
        }
    }
}

/// Plans every row (see [`plan`]), in order.
pub fn plan_all(rows: &[RegistryRow], probe: &ProbeConfig) -> Vec<Planned> {
    rows.iter().map(|r| plan(r, probe)).collect()
}

pub fn plan(row: &RegistryRow, probe: &ProbeConfig) -> Planned {
    match build(row, probe) {
        Ok(t) => Planned::Probe(t),
        Err(reason) => Planned::Invalid(InvalidTarget {
            service_type: row.service_type.clone(),
            url: redact_url(&raw_url(row, probe)).into_owned(),
            reason,
        }),
    }
}

/// The URL as the row describes it, even when it is not valid; it may hold credentials, so
/// only its [`redact_url`] form is shown.
fn raw_url(row: &RegistryRow, probe: &ProbeConfig) -> String {
    match row
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        Some(base) => format!(
            "{}{}",
            base.trim_end_matches('/'),
            row.health_check_endpoint
        ),
        None => format!(
            "http://{}:{}{}",
            host_for_url(&probe.default_host),
            row.port,
            row.health_check_endpoint
        ),
    }
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn build(row: &RegistryRow, probe: &ProbeConfig) -> Result<Target, String> {
    let url = target_url(row, probe)?;
    let overrides = overrides(&row.service_config.0)?;
    let timeout = timeout(overrides.timeout.as_deref(), probe)?;
    let expected_status = expected_status(overrides.expected_status.as_deref(), probe)?;
    let method = method(overrides.method.as_deref())?;
    let headers = headers(overrides.headers)?;
    check_body_contains(overrides.body_contains.as_deref(), method)?;
    Ok(Target {
        service_type: row.service_type.clone(),
        url,
        method,
        timeout,
        expected_status,
        headers,
        body_contains: overrides.body_contains,
    })
}

/// The URL to probe: the endpoint on the row's base URL, or on the default host at its port.
fn target_url(row: &RegistryRow, probe: &ProbeConfig) -> Result<url::Url, String> {
    check_endpoint(&row.health_check_endpoint)?;
    let base = row
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    if base.is_none() && !(1..=65535).contains(&row.port) {
        return Err(format!("port {} is outside 1-65535", row.port));
    }
    let text = raw_url(row, probe);
    if text.len() > MAX_URL_LEN {
        return Err(format!(
            "URL is {} bytes long (max {MAX_URL_LEN})",
            text.len()
        ));
    }
    let shown = echo(&redact_url(&text));
    let url = url::Url::parse(&text).map_err(|e| format!("URL {shown} does not parse ({e})"))?;
    check_url(&url, &shown)?;
    Ok(url)
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if !endpoint.starts_with('/') {
        return Err(format!(
            "health_check_endpoint {endpoint:?} must start with '/'"
        ));
    }
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(format!(
            "health_check_endpoint is {} bytes long (max {MAX_ENDPOINT_LEN})",
            endpoint.len()
        ));
    }
    Ok(())
}

/// An http(s) URL with a host; `shown` is the URL as an error may show it. Credentials are
/// allowed: the prober sends them as basic auth, to the target's origin only.
fn check_url(url: &url::Url, shown: &str) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "URL scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL {shown} has no host"));
    }
    Ok(())
}

/// `health.timeout`, else `probe.timeout`.
fn timeout(raw: Option<&str>, probe: &ProbeConfig) -> Result<Duration, String> {
    let Some(raw) = raw else {
        return Ok(probe.timeout);
    };
    let d = humantime::parse_duration(raw).map_err(|e| {
        let raw = crate::text::echo(raw);
        format!("health.timeout: invalid duration {raw:?} ({e})")
    })?;
    if d.is_zero() || d > probe.interval {
        return Err(format!(
            "health.timeout must be above zero and at most probe.interval, not {raw:?}"
        ));
    }
    Ok(d)
}

/// `health.expected_status`, else `probe.expected_status`.
fn expected_status(raw: Option<&str>, probe: &ProbeConfig) -> Result<StatusSet, String> {
    match raw {
        Some(raw) => raw
            .parse()
            .map_err(|e| format!("health.expected_status: {e}")),
        None => Ok(probe.expected_status.clone()),
    }
}

/// `health.method`, any case; GET when absent.
fn method(raw: Option<&str>) -> Result<Method, String> {
    match raw.map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => Ok(Method::Get),
        Some("HEAD") => Ok(Method::Head),
        Some("POST") => Ok(Method::Post),
        Some(other) => Err(format!(
            "health.method must be GET, HEAD or POST, not {other:?}"
        )),
    }
}

/// `health.headers`: an object of at most [`MAX_HEADERS`] valid header names and string
/// values. Values are often secrets (API keys, tokens), so no error shows one: it names the
/// header and the JSON type it found.
fn headers(raw: Option<serde_json::Value>) -> Result<Vec<(String, String)>, String> {
    let map = match raw {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::Object(map)) => map,
        Some(other) => {
            return Err(format!(
                "health.headers must be an object, not {}",
                json_type(&other)
            ));
        }
    };
    if map.len() > MAX_HEADERS {
        return Err(format!(
            "health.headers has {} entries (max {MAX_HEADERS})",
            map.len()
        ));
    }
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        let shown = echo(&name);
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("health.headers: \"{shown}\" is not a header name"))?;
        let serde_json::Value::String(value) = value else {
            return Err(format!(
                "health.headers.{shown}: the value must be a string, not {}",
                json_type(&value)
            ));
        };
        reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
            format!("health.headers.{shown}: the value is not a valid header value")
        })?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// The JSON type of `value`, for errors that must not show the value itself.
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `health.body_contains`: 1 to [`MAX_BODY_CONTAINS`] bytes, and a method that has a body.
fn check_body_contains(needle: Option<&str>, method: Method) -> Result<(), String> {
    let Some(needle) = needle else {
        return Ok(());
    };
    if needle.is_empty() || needle.len() > MAX_BODY_CONTAINS {
        return Err(format!(
            "health.body_contains must be 1-{MAX_BODY_CONTAINS} bytes"
        ));
    }
    if method == Method::Head {
        return Err("health.body_contains cannot be checked with method HEAD".into());
    }
    Ok(())
}

fn overrides(service_config: &serde_json::Value) -> Result<HealthOverrides, String> {
    match service_config.get("health") {
        None | Some(serde_json::Value::Null) => Ok(HealthOverrides::default()),
        Some(health) => serde_path_to_error::deserialize(health).map_err(|e| {
            let path = e.path().to_string();
            let reason = without_value(&e.into_inner().to_string());
            if path == "." {
                format!("service_config.health: {reason}")
            } else {
                format!("service_config.health.{path}: {reason}")
            }
        }),
    }
}

/// serde_json's reason without the value it quotes (`invalid type: string "Bearer …", expected
/// …` names a secret): what was expected, or the reason cut and escaped.
fn without_value(reason: &str) -> String {
    match reason.split_once(", expected ") {
        Some((found, expected)) => {
            let kind = found.split(':').next().unwrap_or(found);
            format!("{kind}: expected {}", crate::text::echo(expected))
        }
        None => crate::text::echo(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    #[test]
    fn a_wrong_type_under_health_is_reported_without_its_value() {
        let row = json!({"health": "Bearer s3cret-token"});
        let err = overrides(&row).unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(
            err.starts_with("service_config.health: invalid type: expected"),
            "{err}"
        );
    }

    fn probe() -> ProbeConfig {
        Config::from_toml("", "test", None).unwrap().probe
    }

    fn row(
        port: i32,
        base_url: Option<&str>,
        endpoint: &str,
        config: serde_json::Value,
    ) -> RegistryRow {
        RegistryRow {
            service_type: "svc".into(),
            port,
            base_url: base_url.map(str::to_owned),
            health_check_endpoint: endpoint.into(),
            service_config: Json(config),
        }
    }

    fn url_of(r: &RegistryRow) -> String {
        match plan(r, &probe()) {
            Planned::Probe(t) => t.url.to_string(),
            Planned::Invalid(i) => panic!("{}", i.reason),
        }
    }

    fn reason_of(r: &RegistryRow) -> String {
        match plan(r, &probe()) {
            Planned::Probe(t) => panic!("accepted {}", t.url),
            Planned::Invalid(i) => i.reason,
        }
    }

    #[test]
    fn urls_follow_the_design() {
        let cases = [
            (49160, None, "/health", "http://127.0.0.1:49160/health"),
            (
                1,
                Some("https://figma.internal/"),
                "/healthz",
                "https://figma.internal/healthz",
            ),
            (
                1,
                Some("http://10.0.0.5:8080/api/"),
                "/health",
                "http://10.0.0.5:8080/api/health",
            ),
            (0, Some("http://h:81"), "/h?deep=1", "http://h:81/h?deep=1"),
        ];
        for (port, base_url, endpoint, want) in cases {
            assert_eq!(url_of(&row(port, base_url, endpoint, json!({}))), want);
        }
    }

    #[test]
    fn bad_rows_are_rejected_with_a_reason() {
        let long = format!("/{}", "a".repeat(300));
        let cases = [
            (
                row(0, None, "/health", json!({})),
                "port 0 is outside 1-65535",
            ),
            (
                row(70000, None, "/health", json!({})),
                "port 70000 is outside 1-65535",
            ),
            (row(80, None, "health", json!({})), "must start with '/'"),
            (row(80, None, &long, json!({})), "bytes long (max 255)"),
            (
                row(80, Some("ht!tp://x"), "/h", json!({})),
                "does not parse",
            ),
            (
                row(80, Some("ftp://files"), "/h", json!({})),
                "scheme must be http or https",
            ),
            (
                row(80, None, "/h", json!({"health": {"headers": ["X-A"]}})),
                "health.headers must be an object, not an array",
            ),
            (
                row(80, None, "/h", json!({"health": {"timeout": "soon"}})),
                "health.timeout: invalid duration",
            ),
            (
                row(80, None, "/h", json!({"health": {"timeout": "1h"}})),
                "at most probe.interval",
            ),
            (
                row(
                    80,
                    None,
                    "/h",
                    json!({"health": {"expected_status": "2xx"}}),
                ),
                "health.expected_status",
            ),
            (
                row(80, None, "/h", json!({"health": {"method": "DELETE"}})),
                "GET, HEAD or POST",
            ),
            (
                row(80, None, "/h", json!({"health": {"retries": 3}})),
                "unknown field `retries`",
            ),
            (
                row(
                    80,
                    None,
                    "/h",
                    json!({"health": {"headers": {"bad header": "x"}}}),
                ),
                "not a header name",
            ),
            (
                row(
                    80,
                    None,
                    "/h",
                    json!({"health": {"method": "HEAD", "body_contains": "ok"}}),
                ),
                "HEAD",
            ),
            (
                row(80, None, "/h", json!({"health": "fast"})),
                "service_config.health",
            ),
        ];
        for (r, want) in cases {
            let reason = reason_of(&r);
            assert!(reason.contains(want), "want {want:?} in {reason:?}");
        }
    }

    #[test]
    fn overrides_replace_the_defaults() {
        let r = row(
            80,
            None,
            "/h",
            json!({"health": {"timeout": "2s", "expected_status": "200,204", "method": "head",
                              "headers": {"X-Probe": "healthd"}}}),
        );
        let Planned::Probe(t) = plan(&r, &probe()) else {
            panic!()
        };
        assert_eq!(t.timeout, Duration::from_secs(2));
        assert!(t.expected_status.contains(204) && !t.expected_status.contains(201));
        assert_eq!(t.method, Method::Head);
        assert_eq!(t.headers, [("X-Probe".to_owned(), "healthd".to_owned())]);
    }

    #[test]
    fn credentials_are_kept_for_the_probe_and_hidden_everywhere_else() {
        let r = row(80, Some("http://monitor:PASS@h:81"), "/h", json!({}));
        let planned = plan(&r, &probe());
        let Planned::Probe(t) = &planned else {
            panic!("{planned:?}")
        };
        assert_eq!(
            (t.url.username(), t.url.password()),
            ("monitor", Some("PASS"))
        );
        assert_eq!(planned.url(), "http://***@h:81/h");

        let bad = row(80, Some("http://monitor:PASS@[::1"), "/h", json!({}));
        let Planned::Invalid(i) = plan(&bad, &probe()) else {
            panic!("accepted")
        };
        assert_eq!(i.url, "http://***@[::1/h");
        assert!(
            i.reason.contains("http://***@[::1/h does not parse"),
            "{}",
            i.reason
        );
        assert!(!format!("{i:?}").contains("PASS"));
    }

    #[test]
    fn no_error_shows_a_header_value() {
        for value in [
            json!("Bearer SECRET"),
            json!({"X-Api-Key": 12345}),
            json!({"X-Api-Key": {"token": "SECRET"}}),
            json!({"X-Api-Key": ["SECRET"]}),
            json!({"X-Api-Key": "SECRET\n"}),
        ] {
            let r = row(80, None, "/h", json!({"health": {"headers": value}}));
            let reason = reason_of(&r);
            assert!(reason.starts_with("health.headers"), "{reason}");
            assert!(
                !reason.contains("SECRET") && !reason.contains("12345"),
                "{reason}"
            );
        }
    }
}
