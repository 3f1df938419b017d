//! The alert log (DESIGN.md "Alert log"): one structured event per state transition, with the
//! contract's fields. Operators page off these lines, so their names and fields do not change.

use crate::plan::health::{ServiceState, Transition};
use crate::probe::Check;
use crate::store::maintenance::Window;
use crate::text::echo;

/// Logs `transition` of `service_type` at the level the contract gives it.
pub fn log_transition(
    transition: Transition,
    service_type: &str,
    url: &str,
    state: &ServiceState,
    check: &Check,
) {
    let event = transition.event();
    let consecutive_failures = state.consecutive_failures;
    let error_kind = check.outcome.kind().map_or("", |k| k.as_str());
    let error = check.outcome.error_message().unwrap_or_default();
    let response_time_ms = u64::try_from(check.latency.as_millis()).unwrap_or(u64::MAX);
    macro_rules! emit {
        ($level:ident, $message:literal $(, $extra:ident = $value:expr)?) => {
            tracing::$level!(
                event,
                service_type,
                url,
                consecutive_failures,
                error_kind,
                error = error.as_str(),
                response_time_ms,
                $($extra = $value,)?
                $message
            )
        };
    }
    match transition {
        Transition::Down => emit!(error, "service is down"),
        Transition::StillDown => emit!(warn, "service is still down"),
        Transition::Degraded => emit!(warn, "service answers slowly"),
        Transition::Up { down_for } => {
            emit!(info, "service is up again", down_for_s = down_for.as_secs())
        }
        Transition::CertificateExpiring {
            not_after,
            days_left,
        } => {
            let not_after = not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            tracing::warn!(
                event,
                service_type,
                url,
                not_after,
                days_left,
                "the service's certificate expires soon"
            )
        }
        Transition::Flapping => emit!(
            warn,
            "service is flapping; its down/up alerts are held back"
        ),
        Transition::FlappingEnded { healthy } => {
            let state = if healthy { "up" } else { "down" };
            emit!(info, "service has stopped flapping", state = state)
        }
    }
}

/// `monitor_outage`: the failures are the monitor's own; no `service_down` is logged for them.
pub fn monitor_outage(reason: &str, failing: usize, total: usize) {
    tracing::error!(
        event = "monitor_outage",
        reason,
        failing,
        total,
        "the monitor itself cannot reach the services; their failures are inconclusive"
    );
}

/// `monitor_recovered`: failures count again.
pub fn monitor_recovered(reason: &str, failing: usize, total: usize) {
    tracing::info!(
        event = "monitor_recovered",
        reason,
        failing,
        total,
        "the monitor reaches the services again"
    );
}

pub fn maintenance_started(w: &Window) {
    tracing::info!(
        event = "maintenance_started",
        window_id = w.id,
        service_type = w.service_type.as_deref().map_or("*".to_owned(), echo),
        ends_at = %w.ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        reason = echo(&w.reason),
        "maintenance window started; service alerts are held back"
    );
}

pub fn maintenance_ended(id: i64) {
    tracing::info!(
        event = "maintenance_ended",
        window_id = id,
        "maintenance window ended"
    );
}
