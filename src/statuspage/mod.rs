//! The status page on `http.listen` (with `http.status_page = true`): `GET /` serves one
//! server-rendered HTML page (`render`), `GET /api/status.json` the same data as JSON. Both read
//! one [`Snapshot`] (one query) through a cache that holds it for [`FRESH_FOR`] and lets one
//! request at a time refresh it, so the database sees at most one query per [`FRESH_FOR`]
//! whatever the traffic. If the database does not answer, the last snapshot is served, marked
//! with its age; with none, a 503.
//!
//! May import: `config`, `clock`, `text`, `observe`, `store`.

mod render;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::observe::metrics::STATUS_PAGE_QUERIES;
use crate::store::db;
use crate::store::status_page::{self, Snapshot};

/// A snapshot is served this long before the next request reads a new one.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// How long a request waits on the database before serving the last snapshot (or a 503).
const QUERY_LIMIT: Duration = Duration::from_secs(5);

/// The latest snapshot and when it was read.
type Cached = Option<(Instant, Arc<Snapshot>)>;

#[derive(Clone)]
struct Pages {
    pool: PgPool,
    cache: Arc<Mutex<Cached>>,
}

/// The routes `/` and `/api/status.json`, to be merged into the HTTP endpoint.
pub fn router(pool: PgPool) -> Router {
    let pages = Pages {
        pool,
        cache: Arc::default(),
    };
    Router::new()
        .route("/", get(page))
        .route("/api/status.json", get(json))
        .with_state(pages)
}

impl Pages {
    /// The cached snapshot, refreshed if older than [`FRESH_FOR`]; `stale` when the refresh
    /// failed and an older one is served.
    async fn snapshot(&self) -> Result<(Arc<Snapshot>, bool), String> {
        // Held across the query: concurrent requests wait for one refresh instead of each
        // making its own.
        let mut cache = self.cache.lock().await;
        if let Some((at, snap)) = cache.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return Ok((snap.clone(), false));
        }
        metrics::counter!(STATUS_PAGE_QUERIES).increment(1);
        match db::deadline(QUERY_LIMIT, status_page::snapshot(&self.pool)).await {
            Ok(snap) => {
                let snap = Arc::new(snap);
                *cache = Some((Instant::now(), snap.clone()));
                Ok((snap, false))
            }
            Err(e) => match cache.as_ref() {
                Some((_, snap)) => Ok((snap.clone(), true)),
                None => Err(e.to_string()),
            },
        }
    }
}

async fn page(State(pages): State<Pages>) -> Response {
    match pages.snapshot().await {
        Ok((snap, stale)) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            render::page(&snap, stale, chrono::Utc::now()).into_string(),
        )
            .into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render::unavailable(&why).into_string(),
        )
            .into_response(),
    }
}

async fn json(State(pages): State<Pages>) -> Response {
    match pages.snapshot().await {
        Ok((snap, stale)) => {
            let mut response = axum::Json(&*snap).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if stale {
                let warning =
                    HeaderValue::from_static("110 - \"stale: the database does not answer\"");
                headers.insert(header::WARNING, warning);
            }
            response
        }
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": format!("database: {why}") })),
        )
            .into_response(),
    }
}
