//! `ferry mount MOUNTPOINT`: the recovery points as a read-only file system, served in the
//! foreground until unmounted (Ctrl-C, SIGTERM, `fusermount -u`, `umount`).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_mount::{mountpoint, MountOptions, Unmounter};

use crate::cli::{Global, MountArgs};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &MountArgs) -> Result<Outcome> {
    let Some(cache_bytes) = common::parse_size(&a.cache_size) else {
        bail!("--cache-size {:?} is not a size: give one such as 256MiB or 2GiB", a.cache_size)
    };
    let mp = &a.mountpoint;
    // The mount point first: a wrong one costs no passphrase and touches nothing.
    if mountpoint::prepare(mp)? == mountpoint::Prepared::DetachedStale {
        eprintln!("note: {} was still mounted by a ferry mount that was killed; detached it", mp.display());
    }
    let repo = crate::from_disk::open(g, &a.disks, Some("opening the repository: its index"))?;
    let only = if a.recovery_point.is_empty() {
        None
    } else {
        let mut ids = HashSet::new();
        for spec in &a.recovery_point {
            ids.insert(repo.resolve(spec)?.0);
        }
        Some(ids)
    };
    let _pacing = a.disks.from_disk.is_empty().then(|| crate::pacing::Pacing::for_command(g, g.limit_download, "mount"));
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).clamp(2, 8) * 2;
    let opts = MountOptions { cache_bytes: usize::try_from(cache_bytes).unwrap_or(usize::MAX), only, threads };
    // Signals are caught from before the mount exists, so none can end the process between
    // the mount and its handler (which would leave a dead mount behind).
    let signals = Signals::catch()?;
    let spinner = common::Spinner::start("reading the recovery points");
    let mut mounted = ferry_mount::mount(Arc::new(repo), mp, &opts)?;
    drop(spinner);
    signals.unmount_on_signal(mounted.unmounter());
    if g.json {
        // For scripts: the mount serves from here on.
        common::print_json(&serde_json::json!({"mountpoint": mp, "recovery_points": mounted.points()}))?;
    }
    eprintln!(
        "mounted {} recovery point(s) at {}: see {}/latest; Ctrl-C or `fusermount -u {}` unmounts",
        mounted.points(),
        mp.display(),
        mp.display(),
        mp.display()
    );
    mounted.run()?;
    eprintln!("unmounted {}", mp.display());
    Ok(Outcome::Success)
}

/// SIGINT, SIGTERM and SIGHUP, caught on a thread of their own.
struct Signals {
    runtime: tokio::runtime::Runtime,
    streams: Vec<tokio::signal::unix::Signal>,
}

impl Signals {
    fn catch() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the signal handler")?;
        let streams = runtime.block_on(async {
            [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()].into_iter().map(signal).collect::<Result<Vec<_>, _>>()
        });
        Ok(Signals { runtime, streams: streams.context("catch SIGINT and SIGTERM")? })
    }

    /// Unmounts at the first signal (a second one, while files in the mount stay open, has
    /// the mount detached as the first already did: nothing more).
    fn unmount_on_signal(self, mut unmounter: Unmounter) {
        let Signals { runtime, mut streams } = self;
        std::thread::spawn(move || loop {
            runtime.block_on(futures_first(&mut streams));
            eprintln!("unmounting");
            if let Err(e) = unmounter.unmount() {
                eprintln!("error: {e}");
            }
        });
    }
}

/// Waits for any of `streams` to deliver a signal.
async fn futures_first(streams: &mut [tokio::signal::unix::Signal]) {
    std::future::poll_fn(|cx| {
        for s in streams.iter_mut() {
            if s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await;
}
