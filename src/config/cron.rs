//! Cron schedules for maintenance jobs: 6 fields, seconds first, evaluated in UTC. Parsed with
//! the same parser and settings tokio-cron-scheduler uses, so a schedule that passes
//! `config check` is one the scheduler accepts, and `jobs list` can say when it fires next.

use std::fmt;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::text::{ECHO_CHARS, echo, escape_control, truncate};

#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    cron: Option<Cron>,
}

impl CronSchedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let fields = text.split_whitespace().count();
        if fields != 6 && fields != 7 {
            return Err(format!(
                "\"{}\" has {fields} fields; write 6 (sec min hour day-of-month month day-of-week), e.g. \"0 0 3 * * *\" for 03:00 UTC daily",
                echo(text)
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map_err(|e| {
                let why = escape_control(&truncate(&e.to_string(), 3 * ECHO_CHARS)).into_owned();
                format!("\"{}\" is not a cron expression ({why})", echo(text))
            })?;
        // A pattern that never fires (e.g. 30 February) parses but would silently never run.
        cron.find_next_occurrence(&Utc::now(), false)
            .map_err(|_| format!("\"{}\" never fires", echo(text)))?;
        Ok(Self {
            text: text.to_owned(),
            cron: Some(cron),
        })
    }

    /// Stands in for an invalid schedule while validation collects the remaining errors.
    pub(crate) fn placeholder() -> Self {
        Self {
            text: String::new(),
            cron: None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The latest firing at or before `t`: the time a run that starts now was due.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.as_ref()?.find_previous_occurrence(&t, true).ok()
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.as_ref()?.find_next_occurrence(&after, false).ok()
    }
}

/// Two schedules are the same when they are written the same.
impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn six_fields_seconds_first_in_utc() {
        let s = CronSchedule::parse("0 15 * * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 3, 29, 0, 20, 0).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 15, 0).unwrap())
        );
        let daily = CronSchedule::parse("0 0 3 * * *").unwrap();
        assert_eq!(
            daily.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 3, 0, 0).unwrap())
        );
    }

    #[test]
    fn rejects_what_the_scheduler_would_reject() {
        let five = CronSchedule::parse("0 3 * * *").unwrap_err();
        assert!(five.contains("has 5 fields"), "{five}");
        assert!(
            CronSchedule::parse("0 0 25 * * *")
                .unwrap_err()
                .contains("not a cron")
        );
        assert!(CronSchedule::parse("a b c d e f").is_err());
        assert!(
            CronSchedule::parse("0 0 0 30 2 *")
                .unwrap_err()
                .contains("never fires")
        );
    }
}
