//! A machine's backup policy (`ferry vault policy set`, `GET /v1/machines/{id}/policy`): what it
//! backs up, when, what the vault keeps, and its transfer limits. The vault stores and validates
//! it; the agent schedules its backups and paces its transfers by it.

use serde::{Deserialize, Serialize};

/// What a machine backs up, when, and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupPolicy {
    pub paths: Vec<String>,
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Times of day (local time of the machine, `HH:MM`) at which a backup starts.
    pub times: Vec<String>,
    /// Days of the week (`mon` .. `sun`) the times apply to; empty = every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Recovery points kept: daily, weekly, monthly, yearly; enforced by the vault. All zero:
    /// everything is kept.
    #[serde(default)]
    pub keep: Keep,
    /// Transfer limits between the machine and the vault.
    #[serde(default)]
    pub bandwidth: Bandwidth,
}

/// Limits in KiB/s (0 = none) during work hours (on `work_days`) and outside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    pub work_kibps: u32,
    pub other_kibps: u32,
    /// `HH:MM-HH:MM`, the machine's local time.
    pub work_hours: String,
    pub work_days: Vec<String>,
}

impl Default for Bandwidth {
    fn default() -> Self {
        Bandwidth {
            work_kibps: 0,
            other_kibps: 0,
            work_hours: "08:00-18:00".into(),
            work_days: DAYS[..5].iter().map(std::string::ToString::to_string).collect(),
        }
    }
}

impl Bandwidth {
    /// The work hours as minutes of the day, [start, end).
    pub fn work_window(&self) -> Option<(u32, u32)> {
        let (a, b) = self.work_hours.split_once('-')?;
        let ((ah, am), (bh, bm)) = (parse_time(a)?, parse_time(b)?);
        Some((ah * 60 + am, bh * 60 + bm))
    }

    /// The limit in bytes per second at `weekday` (`mon`..) and `minute` of the day; 0 = none.
    pub fn limit_at(&self, weekday: &str, minute: u32) -> u64 {
        let work = self.work_days.iter().any(|d| d == weekday) && self.work_window().is_some_and(|(a, b)| a <= minute && minute < b);
        1024 * u64::from(if work { self.work_kibps } else { self.other_kibps })
    }
}

/// How many recovery points of each period the vault keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Keep {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

/// The day names a policy uses, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl BackupPolicy {
    /// What is wrong with it, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.paths.is_empty() || self.paths.iter().any(|p| !p.starts_with('/')) {
            return Err("a policy backs up at least one absolute path".into());
        }
        if self.times.is_empty() {
            return Err("a policy has at least one time of day (HH:MM)".into());
        }
        for t in &self.times {
            parse_time(t).ok_or_else(|| format!("time {t:?}: expected HH:MM, 00:00 to 23:59"))?;
        }
        for d in self.days.iter().chain(&self.bandwidth.work_days) {
            if !DAYS.contains(&d.as_str()) {
                return Err(format!("day {d:?}: expected one of {}", DAYS.join(", ")));
            }
        }
        if self.bandwidth.work_window().is_none_or(|(a, b)| a >= b) {
            return Err(format!("work hours {:?}: expected HH:MM-HH:MM, the start before the end", self.bandwidth.work_hours));
        }
        Ok(())
    }
}

/// `HH:MM` as (hour, minute).
pub fn parse_time(t: &str) -> Option<(u32, u32)> {
    let (h, m) = t.split_once(':')?;
    let (h, m) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && t.len() == 5).then_some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_limits_follow_work_hours_and_days() {
        let b = Bandwidth { work_kibps: 100, other_kibps: 0, ..Bandwidth::default() };
        assert_eq!(b.limit_at("mon", 9 * 60), 100 * 1024);
        assert_eq!(b.limit_at("mon", 18 * 60), 0, "the window's end is outside it");
        assert_eq!(b.limit_at("sat", 9 * 60), 0, "not a work day");
        let p = BackupPolicy { paths: vec!["/x".into()], times: vec!["01:00".into()], bandwidth: b, ..Default::default() };
        assert!(p.validate().is_ok());
        let bad = BackupPolicy { bandwidth: Bandwidth { work_hours: "18:00-08:00".into(), ..Bandwidth::default() }, ..p.clone() };
        assert!(bad.validate().is_err());
        assert!(BackupPolicy { times: vec!["7:5".into()], ..p }.validate().is_err());
    }

    #[test]
    fn fixed_json() {
        let p = BackupPolicy {
            paths: vec!["/srv".into()],
            excludes: vec!["*.tmp".into()],
            times: vec!["02:30".into()],
            days: vec!["sat".into()],
            keep: Keep { daily: 7, weekly: 4, monthly: 12, yearly: 1 },
            bandwidth: Bandwidth { work_kibps: 512, ..Bandwidth::default() },
        };
        let text = r#"{"paths":["/srv"],"excludes":["*.tmp"],"times":["02:30"],"days":["sat"],"keep":{"daily":7,"weekly":4,"monthly":12,"yearly":1},"bandwidth":{"work_kibps":512,"other_kibps":0,"work_hours":"08:00-18:00","work_days":["mon","tue","wed","thu","fri"]}}"#;
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
        assert_eq!(serde_json::from_str::<BackupPolicy>(text).unwrap(), p);
        // A policy stored before excludes, days, keep and bandwidth existed still reads.
        let old: BackupPolicy = serde_json::from_str(r#"{"paths":["/srv"],"times":["02:30"]}"#).unwrap();
        assert_eq!((old.keep, old.bandwidth), (Keep::default(), Bandwidth::default()));
    }
}
