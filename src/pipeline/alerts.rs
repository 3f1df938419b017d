//! The alert log (DESIGN.md "Alert log"): one structured event per state transition, with the
//! contract's fields. Operators page off these lines, so their names and fields do not change.

use crate::plan::health::{ServiceState, Transition};
use crate::probe::Check;

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
    }
}
