//! The status page, end to end: the daemon with a small fleet (healthy, down, degraded, in
//! maintenance, and one whose name is markup), the page loaded in a real headless Chromium (its
//! DOM and a screenshot), its JSON, and its query budget under 200 requests per second.
//!
//! `MCP_HEALTHD_UPDATE_SCREENSHOT=1` also copies the screenshot to `docs/status-page.png` (the
//! README shows it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{Behaviour, spawn};
use crate::helpers::{TestDb, eventually};
use crate::scripted::Scripted;

const LONG: Duration = Duration::from_secs(30);
const HOSTILE: &str = "<script>alert(1)</script> & Co";

/// The headless browser: Debian's `chromium-headless-shell` or `chromium` (.ci/run installs
/// the first when neither is there).
fn browser() -> PathBuf {
    ["chromium-headless-shell", "chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| {
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .find(|p| p.is_file())
        .expect("no chromium-headless-shell or chromium on PATH (.ci/run installs it)")
}

/// Runs the browser on `url` with `args`, in a profile of its own; returns stdout.
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(browser())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run the browser");
    assert!(
        output.status.success(),
        "browser failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn register(db: &TestDb, service: &str, name: &str, category: &str, port: i32, base: &str) {
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port, category, base_url)
         VALUES ($1, $1, $2, $3, $4, $5)",
    )
    .bind(service)
    .bind(name)
    .bind(port)
    .bind(category)
    .bind(base)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// 89 past days of history for the bars: mostly clean, some bad days.
async fn history(db: &TestDb) {
    sqlx::query(
        "INSERT INTO service_health_daily (service_type, day, checks, failures)
         SELECT s.service_type, (now() AT TIME ZONE 'UTC')::date - g, 2880,
                CASE WHEN (g + length(s.service_type)) % 17 = 0 THEN 300
                     WHEN (g + length(s.service_type)) % 11 = 0 THEN 20 ELSE 0 END
           FROM service_registry s, generate_series(1, 89) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn queries(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("mcp_healthd_status_page_queries_total"))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_service_in_a_real_browser_and_spares_the_database() {
    let db = TestDb::migrated().await;
    let healthy = Scripted::spawn(".").await;
    let failing = Scripted::spawn("F").await;
    let planned = Scripted::spawn("F").await;
    let slow = spawn(Behaviour::Slow(Duration::from_millis(300))).await;
    let slow_url = format!("http://127.0.0.1:{}", slow.port);
    register(&db, "search", "Search", "core", 20001, &healthy.url()).await;
    register(&db, "billing", "Billing", "core", 20002, &failing.url()).await;
    register(&db, "reports", "Reports", "analytics", 20003, &slow_url).await;
    register(&db, "mail", "Mail", "messaging", 20004, &planned.url()).await;
    register(&db, "hostile", HOSTILE, "messaging", 20005, &healthy.url()).await;
    history(&db).await;
    sqlx::query(
        "INSERT INTO maintenance_windows (service_type, starts_at, ends_at, reason)
         VALUES ('mail', now() - interval '1 minute', now() + interval '1 hour', 'mail relay upgrade')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let port = free_port();
    let config = fast_config(
        "interval = \"1s\"\ntimeout = \"900ms\"\nfailure_threshold = 2\ndegraded_after = \"100ms\"",
        "",
    )
    .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
    let daemon = Daemon::start(&db.url, &config);
    let want = [
        ("search", "up"),
        ("billing", "down"),
        ("reports", "degraded"),
        ("mail", "maintenance"),
        ("hostile", "up"),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let json: Value = eventually("every state on /api/status.json", LONG, async || {
        let json: Value = reqwest::get(format!("{base}/api/status.json"))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let states: Vec<(String, String)> = json["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["service_type"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let all = want
            .iter()
            .all(|(s, st)| states.contains(&((*s).to_owned(), (*st).to_owned())));
        let incident = json["incidents"].as_array().is_some_and(|i| !i.is_empty());
        if all && incident {
            Ok(json)
        } else {
            Err(format!("{states:?}"))
        }
    })
    .await;
    assert_eq!(json["services"].as_array().unwrap().len(), 5);
    assert_eq!(
        json["services"][0]["day_uptime"].as_array().unwrap().len(),
        90
    );
    assert_eq!(
        json["services"][0]["day_checks"].as_array().unwrap().len(),
        90
    );
    assert!(
        json["incidents"][0].get("error_message").is_none(),
        "no detail on a public page"
    );
    assert_eq!(json["maintenance"][0]["reason"], "mail relay upgrade");
    assert_eq!(json["incidents"][0]["service_type"], "billing");

    // The page in a real browser: every service with its state; the markup name is text.
    let dom = chromium(&format!("{base}/"), &["--dump-dom"]);
    for (service, state) in want {
        let name = match service {
            "hostile" => "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co".to_owned(),
            other => other[..1].to_uppercase() + &other[1..],
        };
        assert!(dom.contains(&name), "{name} missing:\n{dom}");
        assert!(
            dom.contains(&format!("class=\"state {state}\">{state}</span>")),
            "{state} missing:\n{dom}"
        );
    }
    assert!(!dom.contains("<script"), "a name became markup:\n{dom}");
    assert!(
        dom.contains("Billing</strong> is down since"),
        "open incident on top"
    );
    assert!(dom.contains("mail relay upgrade"));
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &format!("{base}/"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=900,1000",
        ],
    );
    assert_not_blank(&shot);
    if std::env::var_os("MCP_HEALTHD_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&shot, docs.join("status-page.png")).unwrap();
    }

    // 200 requests per second for 3 s: about one query per second.
    let client = reqwest::Client::new();
    let metrics = async || {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        queries(&text)
    };
    let before = metrics().await;
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..600u32 {
        tokio::time::sleep_until((started + Duration::from_millis(5) * i).into()).await;
        let (client, url) = (client.clone(), format!("{base}/"));
        requests.spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) });
    }
    let mut ok = 0;
    while let Some(done) = requests.join_next().await {
        if done.unwrap().is_ok_and(|s| s == 200) {
            ok += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let made = metrics().await - before;
    eprintln!("status page: {made} queries for {ok} answered requests in {elapsed:.1} s");
    assert_eq!(ok, 600, "every request answered");
    assert!(
        made <= elapsed.ceil() + 1.0,
        "{made} queries for 600 requests in {elapsed:.1} s"
    );
    daemon.stop();
}

/// The PNG decodes, and is a picture rather than one colour.
fn assert_not_blank(path: &Path) {
    let file = std::fs::File::open(path).expect("the screenshot was written");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let pixel = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        buf[..info.buffer_size()].chunks(pixel).collect();
    assert!(
        info.width >= 800 && colours.len() > 16,
        "{}x{} with {} colours",
        info.width,
        info.height,
        colours.len()
    );
}
