//! How fast this machine's transfers to and from its vault may go: the limit of its policy
//! (work hours and the rest, followed while a command runs) or the one given on the command line
//! (`--limit-upload`, `--limit-download`, KiB/s as restic takes them; 0 = none). Every transfer
//! of a registered machine keeps to it: the agent's backups, and `ferry backup` and `ferry
//! restore` run by hand.

use std::sync::mpsc;
use std::time::Duration;

use chrono::{Datelike, Local, Timelike};
use ferry_api::{BackupPolicy, DAYS};

use crate::cli::Global;
use crate::common::{self, Registration};

/// The policy's transfer limit now, bytes per second (0 = none).
pub fn limit_now(p: &BackupPolicy) -> u64 {
    let now = Local::now();
    let weekday = DAYS[now.weekday().num_days_from_monday() as usize];
    p.bandwidth.limit_at(weekday, now.hour() * 60 + now.minute())
}

/// A limit in force while it lives; transfers are unlimited again when it is dropped.
pub struct Pacing {
    stop: Option<mpsc::Sender<()>>,
    follower: Option<std::thread::JoinHandle<()>>,
}

impl Pacing {
    /// The policy's limit, followed every 30 s as work hours begin and end; `who` prefixes the
    /// messages (`agent`, `backup`).
    pub fn follow(policy: BackupPolicy, who: &'static str) -> Pacing {
        let limit = limit_now(&policy);
        ferry_store::set_rate_limit(limit);
        if limit > 0 {
            eprintln!("{who}: transfers limited to {} KiB/s by this machine's policy", limit / 1024);
        }
        let (stop, stop_rx) = mpsc::channel::<()>();
        let follower = std::thread::spawn(move || {
            let mut current = limit;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(Duration::from_secs(30)) {
                let l = limit_now(&policy);
                if l != current {
                    ferry_store::set_rate_limit(l);
                    eprintln!("{who}: transfer limit now {}", if l == 0 { "none".to_string() } else { format!("{} KiB/s", l / 1024) });
                    current = l;
                }
            }
        });
        Pacing { stop: Some(stop), follower: Some(follower) }
    }

    /// A fixed limit in KiB/s (0 = none).
    pub fn fixed(kibps: u64) -> Pacing {
        ferry_store::set_rate_limit(kibps.saturating_mul(1024));
        Pacing { stop: None, follower: None }
    }

    /// For a command of this machine run by hand: `given` (KiB/s) if the command line says, else
    /// the policy of the registered machine when the command goes to its vault (a policy that
    /// cannot be read limits nothing, with a warning), else nothing.
    pub fn for_command(g: &Global, given: Option<u64>, who: &'static str) -> Pacing {
        if let Some(kibps) = given {
            return Pacing::fixed(kibps);
        }
        if !common::in_vault(g) || g.machine.is_some() {
            return Pacing::fixed(0);
        }
        let policy = Registration::load_for(g).ok().flatten().and_then(|reg| {
            let client = ferry_store::VaultClient::new(&reg.vault, &reg.cert_sha256, &reg.token).ok()?;
            match client.policy(&reg.machine) {
                Ok(p) => Some(p),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    eprintln!("warning: {who}: this machine's policy could not be read ({e}); transfers are not limited");
                    None
                }
            }
        });
        match policy {
            Some(p) => Pacing::follow(p, who),
            None => Pacing::fixed(0),
        }
    }
}

impl Drop for Pacing {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
        ferry_store::set_rate_limit(0);
    }
}
