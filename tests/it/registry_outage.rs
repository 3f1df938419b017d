//! A database outage seen by the registry watch is logged once at warn, with one line when it
//! ends, not once per refresh; the services keep being checked from the last registry.

use std::time::Duration;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, eventually};
use crate::prober::register;
use crate::proxy::Proxy;

fn count(events: &[serde_json::Value], event: &str) -> usize {
    events.iter().filter(|e| e["event"] == event).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_is_logged_once_with_its_end() {
    let db = TestDb::migrated().await;
    let server = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "svc", server.port.into()).await;
    let proxy = Proxy::to_test_server().await;
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"",
        "[registry]\nrefresh_interval = \"100ms\"\n",
    );
    let daemon = Daemon::start(&proxy.url_for(&db), &config);

    proxy.cut();
    let failed = daemon.wait_for(
        |e| e["event"] == "registry_refresh_failed",
        Duration::from_secs(15),
    );
    assert_eq!(failed["level"], "WARN", "{failed}");
    // Twenty more checks of the last registry: about forty refreshes that failed too.
    let at_cut = server.hits();
    eventually(
        "checks go on during the outage",
        Duration::from_secs(30),
        async || {
            let hits = server.hits();
            (hits >= at_cut + 20).then_some(()).ok_or(hits)
        },
    )
    .await;
    proxy.restore();
    daemon.wait_for(
        |e| e["event"] == "registry_refresh_recovered",
        Duration::from_secs(30),
    );

    let (code, events) = daemon.stop();
    assert_eq!(code, Some(0));
    assert_eq!(
        count(&events, "registry_refresh_failed"),
        1,
        "once per outage"
    );
    assert_eq!(count(&events, "registry_refresh_recovered"), 1);
}
