//! The small HTTP endpoint on `http.listen`: `/metrics` (Prometheus text format) and
//! `/healthz` (200 while checks keep completing and the database answers, 503 with the reason).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::observe::stats::Stats;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    pub stats: Arc<Stats>,
    pub pool: PgPool,
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<HttpState>) -> (StatusCode, String) {
    if let Err(why) = state.stats.prober_progress() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("prober: {why}\n"));
    }
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database: no answer within 2s\n".into(),
        ),
    }
}

/// Serves until `stop`. Also drains the recorder's histogram buffers every few seconds, so
/// memory stays flat however rarely `/metrics` is scraped.
pub async fn serve(listener: TcpListener, state: HttpState, stop: CancellationToken) {
    let upkeep = {
        let (handle, stop) = (state.metrics.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(event = "http_failed", error = %e, "the /metrics and /healthz endpoint stopped");
    }
    upkeep.abort();
}
