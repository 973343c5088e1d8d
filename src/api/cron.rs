//! A schedule's cron expression read in its time zone: which run is due now, and when the next
//! one is. Pure: the caller says what time it is.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: TimeZone,
}

impl CronSchedule {
    /// Parses five cron fields (or an `@daily`-style macro) and an IANA zone (`None`: UTC).
    /// The error says which of the two is wrong and why.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, CronProblem> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| {
                CronProblem::Schedule(format!("{expression:?} is not a cron schedule: {e}"))
            })?;
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                CronProblem::TimeZone(format!(
                    "{name:?} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)"
                ))
            })?,
        };
        Ok(Self { cron, zone })
    }

    /// The latest scheduled time at or before `now` and after `after`: the run that is due.
    pub fn due(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let now = now.to_zoned(self.zone.clone());
        let latest = self.cron.find_previous_occurrence(&now, true).ok()?;
        let latest = latest.timestamp();
        (latest > after).then_some(latest)
    }

    /// The first scheduled time after `now`.
    pub fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        let now = now.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|next| next.timestamp())
    }
}

/// What is wrong with a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronProblem {
    /// The cron expression.
    #[error("{0}")]
    Schedule(String),
    /// The time zone.
    #[error("{0}")]
    TimeZone(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_due_run_is_the_latest_time_not_yet_run() {
        let hourly = CronSchedule::parse("0 * * * *", None).unwrap();
        let now = at("2026-12-01T10:20:00Z");
        assert_eq!(
            hourly.due(at("2026-12-01T08:00:00Z"), now),
            Some(at("2026-12-01T10:00:00Z")),
            "missed runs are not made up for: only the latest is due"
        );
        assert_eq!(hourly.due(at("2026-12-01T10:00:00Z"), now), None);
        assert_eq!(hourly.next_after(now), Some(at("2026-12-01T11:00:00Z")));
    }

    #[test]
    fn the_schedule_is_read_in_its_time_zone_across_a_daylight_saving_change() {
        let daily = CronSchedule::parse("30 9 * * *", Some("Europe/Berlin")).unwrap();
        // Winter: UTC+1.
        assert_eq!(
            daily.next_after(at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-01T08:30:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            daily.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T07:30:00Z"))
        );
        let weekly = CronSchedule::parse("@weekly", Some("UTC")).unwrap();
        assert_eq!(
            weekly.next_after(at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-06T00:00:00Z")),
            "Sunday midnight"
        );
    }

    #[test]
    fn a_bad_expression_or_zone_says_which() {
        assert!(matches!(
            CronSchedule::parse("61 * * * *", None),
            Err(CronProblem::Schedule(_))
        ));
        assert!(matches!(
            CronSchedule::parse("0 0 * * * *", None),
            Err(CronProblem::Schedule(_))
        ));
        let zone = CronSchedule::parse("0 * * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(matches!(zone, CronProblem::TimeZone(ref m) if m.contains("Mars/Olympus")));
    }
}
