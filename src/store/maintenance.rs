//! Maintenance windows (table `maintenance_windows`, migration 0013): planned work on one
//! service, or (`service_type` NULL) on all. Checks go on inside a window; the daemon reads
//! [`current_and_ahead`] every few seconds and asks [`Window::covers`] per result, so that read
//! is one statement on the `ends_at` index. Operators add and end windows with
//! `mcp-healthd maintenance`.
//!
//! A window ended before it began (`end` of a planned window) keeps `ends_at = starts_at`: it
//! is empty, covers nothing and is no longer listed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::text::echo;

/// The longest reason the table accepts, in characters.
pub const REASON_MAX_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Window {
    pub id: i64,
    /// `None`: every service.
    pub service_type: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
}

impl Window {
    /// Whether the window has begun and not yet ended at `at` (`starts_at <= at < ends_at`).
    pub fn active_at(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }

    /// Whether a check of `service_type` made at `at` falls inside this window.
    pub fn covers(&self, service_type: &str, at: DateTime<Utc>) -> bool {
        self.active_at(at)
            && self
                .service_type
                .as_deref()
                .is_none_or(|s| s == service_type)
    }
}

/// Why a window was not added. Every message names the cause; foreign text is escaped.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("no service `{}` in service_registry", echo(.0))]
    UnknownService(String),
    #[error(
        "the window must end after it starts (starts {}, ends {})",
        show(.starts_at),
        show(.ends_at)
    )]
    EndsBeforeStart {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    #[error("the window would end in the past ({}; now is {})", show(.ends_at), show(.now))]
    EndsInPast {
        ends_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("the reason is empty: say why the services are under maintenance")]
    EmptyReason,
    #[error("the reason is {0} characters long; at most {REASON_MAX_CHARS} are allowed")]
    ReasonTooLong(usize),
    #[error("the reason contains a NUL character, which PostgreSQL text cannot hold")]
    NulInReason,
    #[error(transparent)]
    Query(#[from] sqlx::Error),
}

/// A time as the messages and the terminal table show it.
pub fn show(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What [`add`] checks before writing, against the time `now`: the window ends after it starts
/// and after `now`, and the reason is 1 to [`REASON_MAX_CHARS`] characters and not blank.
/// Whether the service exists is the database's to say.
pub fn validate(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), AddError> {
    if ends_at <= now {
        return Err(AddError::EndsInPast { ends_at, now });
    }
    if ends_at <= starts_at {
        return Err(AddError::EndsBeforeStart { starts_at, ends_at });
    }
    if reason.trim().is_empty() {
        return Err(AddError::EmptyReason);
    }
    let chars = reason.chars().count();
    if chars > REASON_MAX_CHARS {
        return Err(AddError::ReasonTooLong(chars));
    }
    if reason.contains('\0') {
        return Err(AddError::NulInReason);
    }
    Ok(())
}

/// Adds a window for `service_type` (`None`: every service) and returns its id.
pub async fn add(
    pool: &PgPool,
    service_type: Option<&str>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reason: &str,
) -> Result<i64, AddError> {
    validate(starts_at, ends_at, reason, Utc::now())?;
    let inserted = sqlx::query_scalar(
        "INSERT INTO maintenance_windows (service_type, starts_at, ends_at, reason)
         VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(service_type)
    .bind(starts_at)
    .bind(ends_at)
    .bind(reason)
    .fetch_one(pool)
    .await;
    inserted.map_err(|e| {
        let code = e.as_database_error().and_then(|d| d.code());
        match (code.as_deref(), service_type) {
            // The foreign key to service_registry, or a name longer than any service_type.
            (Some("23503" | "22001"), Some(service)) => AddError::UnknownService(service.into()),
            _ => AddError::Query(e),
        }
    })
}

/// The windows not yet over (`ends_at > now()`, empty ones left out), active or planned,
/// ordered by `starts_at`, then `id`. One statement on the `ends_at` index: the daemon calls it
/// every few seconds.
pub async fn current_and_ahead(pool: &PgPool) -> sqlx::Result<Vec<Window>> {
    sqlx::query_as(
        "SELECT id, service_type::text AS service_type, starts_at, ends_at, reason
           FROM maintenance_windows
          WHERE ends_at > now() AND ends_at > starts_at
          ORDER BY starts_at, id",
    )
    .fetch_all(pool)
    .await
}

/// What [`end`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    /// Ended now; `ends_at == starts_at` when the window had not begun (it is now empty).
    Ended {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    /// It had ended already (`ends_at == starts_at`: it was cancelled before it began).
    AlreadyEnded {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    /// No window has this id.
    NotFound,
}

/// Ends window `id` now (`ends_at = greatest(starts_at, now())`), unless it has ended already.
/// One statement: of two operators ending the same window, one ends it and the other is told
/// it had ended.
pub async fn end(pool: &PgPool, id: i64) -> sqlx::Result<EndOutcome> {
    type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let (ended, before): (Times, Times) = sqlx::query_as::<_, (_, _, _, _)>(
        "WITH ended AS (
             UPDATE maintenance_windows SET ends_at = greatest(starts_at, now())
              WHERE id = $1 AND ends_at > now() AND ends_at > starts_at
             RETURNING starts_at, ends_at)
         SELECT e.starts_at, e.ends_at, w.starts_at, w.ends_at
           FROM (VALUES (1)) AS one (x)
           LEFT JOIN ended e ON true
           LEFT JOIN maintenance_windows w ON w.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .map(|(a, b, c, d)| ((a, b), (c, d)))?;
    Ok(match (ended, before) {
        ((Some(starts_at), Some(ends_at)), _) => EndOutcome::Ended { starts_at, ends_at },
        (_, (Some(starts_at), Some(ends_at))) => EndOutcome::AlreadyEnded { starts_at, ends_at },
        _ => EndOutcome::NotFound,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).unwrap()
    }

    fn window(service_type: Option<&str>) -> Window {
        Window {
            id: 1,
            service_type: service_type.map(Into::into),
            starts_at: at(10, 0),
            ends_at: at(11, 0),
            reason: "upgrade".into(),
        }
    }

    #[test]
    fn covers_from_its_start_up_to_but_not_including_its_end() {
        let w = window(Some("figma"));
        assert!(!w.covers("figma", at(9, 59)));
        assert!(w.covers("figma", at(10, 0)));
        assert!(w.covers("figma", at(10, 59)));
        assert!(!w.covers("figma", at(11, 0)));
        assert!(w.active_at(at(10, 30)) && !w.active_at(at(11, 0)));
    }

    #[test]
    fn covers_only_its_service_unless_it_is_for_all() {
        assert!(!window(Some("figma")).covers("miro", at(10, 30)));
        assert!(window(None).covers("miro", at(10, 30)));
        assert!(window(None).covers("figma", at(10, 30)));
    }

    #[test]
    fn an_empty_window_covers_nothing() {
        let mut w = window(None);
        w.ends_at = w.starts_at;
        assert!(!w.covers("figma", w.starts_at));
        assert!(!w.active_at(w.starts_at));
    }

    #[test]
    fn validation_names_the_cause() {
        let now = at(9, 0);
        assert!(validate(at(10, 0), at(11, 0), "upgrade", now).is_ok());
        // Begun already, still ahead: fine.
        assert!(validate(at(8, 0), at(11, 0), "upgrade", now).is_ok());
        let err = |s, e, r: &str| validate(s, e, r, now).unwrap_err().to_string();
        assert_eq!(
            err(at(10, 0), at(10, 0), "x"),
            "the window must end after it starts (starts 2026-12-03 10:00:00 UTC, ends 2026-12-03 10:00:00 UTC)"
        );
        assert!(err(at(10, 0), at(9, 30), "x").starts_with("the window must end after it starts"));
        // Both: the past is what the operator must hear about.
        assert!(err(now, at(8, 0), "x").contains("in the past"));
        assert_eq!(
            err(at(8, 0), at(8, 30), "x"),
            "the window would end in the past (2026-12-03 08:30:00 UTC; now is 2026-12-03 09:00:00 UTC)"
        );
        assert!(err(at(8, 0), now, "x").contains("in the past"));
        assert!(err(at(10, 0), at(11, 0), "").starts_with("the reason is empty"));
        assert!(err(at(10, 0), at(11, 0), " \t").starts_with("the reason is empty"));
        let long = "é".repeat(REASON_MAX_CHARS);
        assert!(validate(at(10, 0), at(11, 0), &long, now).is_ok());
        assert_eq!(
            err(at(10, 0), at(11, 0), &format!("{long}x")),
            "the reason is 501 characters long; at most 500 are allowed"
        );
        assert!(err(at(10, 0), at(11, 0), "a\0b").contains("NUL"));
    }

    #[test]
    fn an_unknown_service_is_named_escaped() {
        assert_eq!(
            AddError::UnknownService("fig\u{1b}[2Jma".into()).to_string(),
            "no service `fig\\u{1b}[2Jma` in service_registry"
        );
    }
}
