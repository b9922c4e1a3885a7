//! `ferry agent run`: the scheduler daemon of a registered machine. It fetches the machine's
//! policy from the vault, and at each of the policy's times runs a backup of its paths (a job
//! in the vault, like any backup of a registered machine).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{Datelike, Local, NaiveTime, TimeZone};
use ferry_api::{parse_time, BackupPolicy, DAYS};

use crate::cli::{AgentRunArgs, BackupArgs, Global};
use crate::common::Registration;
use crate::Outcome;

/// How often the daemon looks at the vault for a changed policy while it waits.
const POLL: Duration = Duration::from_mins(1);

fn fetch_policy(reg: &Registration) -> Result<BackupPolicy> {
    let client = ferry_store::VaultClient::new(&reg.vault, &reg.cert_sha256, &reg.token)?;
    let p = client.policy(&reg.machine).context("fetch this machine's policy")?;
    p.validate().map_err(|e| anyhow::anyhow!("the policy is invalid: {e}"))?;
    Ok(p)
}

/// The first time after `now` that the policy names.
pub fn next_run(p: &BackupPolicy, now: chrono::DateTime<Local>) -> Option<chrono::DateTime<Local>> {
    let mut best: Option<chrono::DateTime<Local>> = None;
    for day in 0..8 {
        let date = (now + chrono::Duration::days(day)).date_naive();
        let wd = DAYS[date.weekday().num_days_from_monday() as usize];
        if !p.days.is_empty() && !p.days.iter().any(|d| d == wd) {
            continue;
        }
        for t in &p.times {
            let (h, m) = parse_time(t)?;
            let at = Local.from_local_datetime(&date.and_time(NaiveTime::from_hms_opt(h, m, 0)?)).earliest()?;
            if at > now && best.is_none_or(|b| at < b) {
                best = Some(at);
            }
        }
    }
    best
}

fn backup(g: &Global, p: &BackupPolicy) -> Result<Outcome> {
    // A backup that runs into or out of work hours changes limit with them.
    let _pacing = crate::pacing::Pacing::follow(p.clone(), "agent");
    run_policy_backup(g, p)
}

fn run_policy_backup(g: &Global, p: &BackupPolicy) -> Result<Outcome> {
    let args = BackupArgs {
        paths: p.paths.iter().map(Into::into).collect(),
        exclude: p.excludes.clone(),
        exclude_file: Vec::new(),
        one_file_system: false,
        tag: vec!["policy".into()],
        host: None,
        checkpoint_every: 60,
        offline: false,
        staging: None,
        import_job: None,
        container: None,
        device: Vec::new(),
        unlock_file: None,
    };
    crate::cmd::backup::run(g, &args)
}

pub fn run(g: &Global, a: &AgentRunArgs) -> Result<Outcome> {
    let Some(reg) = Registration::load_for(g)? else {
        bail!("this machine is not registered with a vault: run `ferry register --vault-credentials FILE` first");
    };
    if a.once {
        return backup(g, &fetch_policy(&reg)?);
    }
    eprintln!("agent: machine {:?} of {}", reg.name, reg.vault);
    loop {
        let policy = match fetch_policy(&reg) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("agent: {e:#}; trying again in {} s", POLL.as_secs());
                std::thread::sleep(POLL);
                continue;
            }
        };
        let Some(at) = next_run(&policy, Local::now()) else {
            bail!("the policy names no time this agent can schedule");
        };
        let wait = (at - Local::now()).to_std().unwrap_or_default();
        if wait > POLL {
            std::thread::sleep(POLL); // then look at the policy again
            continue;
        }
        std::thread::sleep(wait);
        eprintln!("agent: backup of {} (scheduled {at})", policy.paths.join(" "));
        match backup(g, &policy) {
            Ok(Outcome::Success) => eprintln!("agent: backup finished"),
            Ok(_) => eprintln!("agent: backup finished, partial (see the job in the vault)"),
            Err(e) => eprintln!("agent: backup failed: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_first_named_time_after_now() {
        let p = BackupPolicy { paths: vec!["/x".into()], times: vec!["09:30".into(), "21:00".into()], ..Default::default() };
        let now = Local.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap(); // a Monday
        assert_eq!(next_run(&p, now).unwrap(), Local.with_ymd_and_hms(2026, 11, 23, 21, 0, 0).unwrap());
        let weekly = BackupPolicy { days: vec!["sat".into()], ..p };
        assert_eq!(next_run(&weekly, now).unwrap(), Local.with_ymd_and_hms(2026, 11, 28, 9, 30, 0).unwrap());
    }
}
