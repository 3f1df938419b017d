//! Secrets in registry rows: a `base_url` with userinfo is probed with its credentials (basic
//! auth) but shown as `***` in `check`, `check --json`, `status`, the stored `error_message` and
//! the alert log, even when it does not parse; a `health.headers` value of the wrong type is
//! rejected without being echoed; and on a redirect to another origin no header from
//! `health.headers` (nor the credentials) goes along, while a same-origin redirect keeps them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{Daemon, fast_config};
use crate::fleet;
use crate::helpers::{TestDb, eventually, healthd, text};
use crate::prober::statuses;
use crate::recorder::{Recorder, header};

const PASSWORD: &str = "hunter2-userinfo";
/// `Basic base64("monitor:hunter2-userinfo")`.
const BASIC_AUTH: &str = "Basic bW9uaXRvcjpodW50ZXIyLXVzZXJpbmZv";

/// One `service_registry` row with everything the probe reads.
pub async fn insert_row(
    db: &TestDb,
    service_type: &str,
    port: i32,
    base_url: Option<&str>,
    endpoint: &str,
    service_config: Value,
) {
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port, category,
                                       base_url, health_check_endpoint, service_config)
         VALUES ($1, 'n', 'd', $2, 'test', $3, $4, $5)",
    )
    .bind(service_type)
    .bind(port)
    .bind(base_url)
    .bind(endpoint)
    .bind(service_config)
    .execute(&db.pool)
    .await
    .unwrap();
}

fn assert_hidden(what: &str, output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "{what} shows {secret:?}:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_are_used_by_the_probe_and_shown_nowhere() {
    let db = TestDb::migrated().await;
    let auth = Recorder::spawn(|_, head| match header(head, "authorization") {
        Some(BASIC_AUTH) => (200, String::new()),
        _ => (401, "WWW-Authenticate: Basic realm=\"x\"\r\n".into()),
    })
    .await;
    let closed = fleet::closed_port().await.unwrap();
    let with_userinfo = |port: u16| format!("http://monitor:{PASSWORD}@127.0.0.1:{port}");
    let rows = [
        ("userinfo_ok", Some(with_userinfo(auth.port)), json!({})),
        ("userinfo_down", Some(with_userinfo(closed.port)), json!({})),
        (
            "userinfo_unparsed",
            Some(format!("http://monitor:{PASSWORD}@[::1")),
            json!({}),
        ),
        (
            "header_number",
            None,
            json!({"health": {"headers": {"X-Api-Key": 424242424242u64}}}),
        ),
        (
            "header_string",
            None,
            json!({"health": {"headers": "Bearer tok-7f3a9c"}}),
        ),
        (
            "header_object",
            None,
            json!({"health": {"headers": {"Authorization": {"t": "tok-obj-9d1e"}}}}),
        ),
    ];
    for (port, (service, base_url, config)) in (1..).zip(rows) {
        insert_row(&db, service, port, base_url.as_deref(), "/health", config).await;
    }
    let secrets = [
        PASSWORD,
        "424242424242",
        "tok-7f3a9c",
        "tok-obj-9d1e",
        &BASIC_AUTH[6..],
    ];
    let shown_ok = format!("http://***@127.0.0.1:{}/health", auth.port);
    let env = [("DATABASE_URL", db.url.expose())];

    let table = healthd(&["check"], &env);
    let out = text(&table.stdout) + &text(&table.stderr);
    assert_hidden("check", &out, &secrets);
    let ok_line = out
        .lines()
        .find(|l| l.starts_with("userinfo_ok"))
        .unwrap_or_default();
    assert!(
        ok_line.contains(" ok ") && ok_line.contains(&shown_ok),
        "{out}"
    );

    let json_out = healthd(&["check", "--json"], &env);
    assert_hidden("check --json", &text(&json_out.stderr), &secrets);
    let rows: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_hidden("check --json", &rows.to_string(), &secrets);
    let by_name = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["service_type"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("userinfo_ok")["healthy"], true, "{rows:#}");
    assert_eq!(by_name("userinfo_ok")["url"], shown_ok.as_str());
    assert_eq!(
        by_name("userinfo_unparsed")["url"],
        "http://***@[::1/health"
    );
    let number = by_name("header_number")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        number.contains("health.headers.X-Api-Key: the value must be a string, not a number"),
        "{number}"
    );

    let config = fast_config(
        "interval = \"300ms\"\ntimeout = \"250ms\"\nfailure_threshold = 2",
        "",
    );
    let daemon = Daemon::start(&db.url, &config);
    let down = [
        "userinfo_down",
        "userinfo_unparsed",
        "header_number",
        "header_string",
        "header_object",
    ];
    eventually(
        "every service judged",
        Duration::from_secs(30),
        async || {
            let events = daemon.events();
            let alerted = |s: &str| {
                events
                    .iter()
                    .any(|e| e["event"] == "service_down" && e["service_type"] == s)
            };
            let healthy = statuses(&db)
                .await
                .get("userinfo_ok")
                .and_then(|r| r.is_healthy);
            match down.iter().all(|s| alerted(s)) && healthy == Some(true) {
                true => Ok(()),
                false => Err(daemon.raw_log()),
            }
        },
    )
    .await;
    let (_, events) = daemon.stop();
    let log: String = events.iter().map(|e| format!("{e}\n")).collect();
    assert_hidden("the daemon's log", &log, &secrets);
    let alert = events
        .iter()
        .find(|e| e["event"] == "service_down" && e["service_type"] == "userinfo_down")
        .unwrap();
    assert_eq!(
        alert["url"],
        format!("http://***@127.0.0.1:{}/health", closed.port)
    );
    let invalid = events
        .iter()
        .find(|e| e["event"] == "invalid_target" && e["service_type"] == "userinfo_unparsed")
        .unwrap();
    assert_eq!(invalid["url"], "http://***@[::1/health", "{invalid}");

    let stored: Vec<(String,)> = sqlx::query_as("SELECT s::text FROM service_health_status s")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_hidden("service_health_status", &format!("{stored:?}"), &secrets);
    let unparsed = statuses(&db).await.remove("userinfo_unparsed").unwrap();
    let message = unparsed.error_message.unwrap_or_default();
    assert!(
        message.starts_with("invalid_target: URL http://***@[::1/health does not parse"),
        "{message}"
    );

    for args in [&["status"][..], &["status", "--json"]] {
        let out = healthd(args, &env);
        let all = text(&out.stdout) + &text(&out.stderr);
        assert_hidden(&args.join(" "), &all, &secrets);
        assert!(all.contains("userinfo_unparsed"), "{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_headers_and_credentials_do_not_follow_a_redirect_to_another_origin() {
    let db = TestDb::migrated().await;
    let other = Recorder::spawn(|_, _| (200, String::new())).await;
    let elsewhere = format!("Location: http://127.0.0.1:{}/landed\r\n", other.port);
    let origin = Recorder::spawn(move |path, _| match path {
        "/cross" | "/cross-userinfo" => (302, elsewhere.clone()),
        "/same" => (307, "Location: /landed\r\n".into()),
        _ => (200, String::new()),
    })
    .await;
    let base = format!("http://127.0.0.1:{}", origin.port);
    let with_userinfo = format!("http://monitor:{PASSWORD}@127.0.0.1:{}", origin.port);
    let headers = |key: &str| json!({"health": {"headers": {"X-Api-Key": key, "Authorization": format!("Bearer {key}")}}});
    insert_row(&db, "cross", 1, Some(&base), "/cross", headers("key-cross")).await;
    insert_row(
        &db,
        "cross_userinfo",
        2,
        Some(&with_userinfo),
        "/cross-userinfo",
        json!({}),
    )
    .await;
    insert_row(&db, "same", 3, Some(&base), "/same", headers("key-same")).await;

    let out = healthd(&["check", "--json"], &[("DATABASE_URL", db.url.expose())]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == true),
        "{rows:#}"
    );

    // The origin got what the rows give it: the headers, and the URL's credentials.
    let sent = &origin.heads_for("/cross")[0];
    assert_eq!(header(sent, "x-api-key"), Some("key-cross"), "{sent}");
    let sent = &origin.heads_for("/cross-userinfo")[0];
    assert_eq!(header(sent, "authorization"), Some(BASIC_AUTH), "{sent}");
    // Followed within the origin, they go along.
    let landed = &origin.heads_for("/landed")[0];
    assert_eq!(header(landed, "x-api-key"), Some("key-same"), "{landed}");
    assert_eq!(
        header(landed, "authorization"),
        Some("Bearer key-same"),
        "{landed}"
    );
    // Another origin gets none of them.
    let received = other.heads();
    assert_eq!(received.len(), 2, "{received:#?}");
    for head in &received {
        for name in ["x-api-key", "authorization"] {
            assert_eq!(
                header(head, name),
                None,
                "{name} reached another origin:\n{head}"
            );
        }
    }
}

/// A row's own `Host` or `User-Agent` replaces the default, never doubles it: a server answers
/// a request with two `Host` headers with 400 (the plain-http path builds its own request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_header_replaces_the_default_of_the_same_name() {
    let db = TestDb::migrated().await;
    let server = Recorder::spawn(|_, _| (200, String::new())).await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let headers = json!({"health": {"headers": {"Host": "api.internal", "User-Agent": "probe/1"}}});
    insert_row(&db, "vhost", 1, Some(&base), "/h", headers).await;

    let out = healthd(&["check", "--json"], &[("DATABASE_URL", db.url.expose())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let head = &server.heads_for("/h")[0];
    let count = |name: &str| {
        head.lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .count()
    };
    assert_eq!((count("host"), count("user-agent")), (1, 1), "{head}");
    assert_eq!(header(head, "host"), Some("api.internal"), "{head}");
    assert_eq!(header(head, "user-agent"), Some("probe/1"), "{head}");
}
