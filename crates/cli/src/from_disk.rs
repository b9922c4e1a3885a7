//! `--from-disk`: opening the repository an export job's disks carry, with no network
//! (`ferry restore` and `ferry mount`; docs/design/export-jobs.md). The disk set is checked
//! whole with the job's disk-unlock file before the passphrase is asked for; each seed-disk
//! error is told in the export job's terms, saying what to do.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_api::{export_label_job, ExportUnlock, EXPORT_UNLOCK_MAGIC};
use ferry_repo::Repository;
use ferry_seed::{DiskKey, ExportDisks, SeedError};

use crate::cli::{FromDisks, Global};
use crate::common;

/// The repository: from the export disks of `d` if any are given, else as every command opens
/// it ([`common::open_showing`]).
pub fn open(g: &Global, d: &FromDisks, what: Option<&str>) -> Result<Repository> {
    let Some(unlock_file) = d.unlock_file.as_deref().filter(|_| !d.from_disk.is_empty()) else {
        return common::open_showing(g, what);
    };
    if g.machine.is_some() || g.repo.as_deref().is_some_and(|r| !r.is_empty()) {
        bail!("--from-disk reads the repository from the disks: leave out --repo and --machine");
    }
    let unlock = read_unlock(unlock_file)?;
    let key = DiskKey::from_hex(&unlock.disk_key).with_context(|| format!("the disk-unlock file {}", unlock_file.display()))?;
    let disks = ExportDisks::open(&d.from_disk, &export_label_job(&unlock.job), &key).map_err(|e| explain(e, &unlock.job))?;
    if let Some(set) = &unlock.set_id {
        if *set != hex::encode(disks.set().set_id()) {
            bail!(
                "these disks are another disk set of export job {} than the unlock file's: ask for the unlock file again \
                 (`ferry export-job unlock {} --out FILE`)",
                unlock.job,
                unlock.job
            );
        }
    }
    let pw = common::passphrase(g, "repository passphrase: ")?;
    let _spinner = what.map(common::Spinner::start);
    // A cache of its own: the disks' index must not mix with the vault repository's.
    let cache = common::cache_dir(g).join(format!("export-{}", unlock.job));
    Ok(Repository::open(Arc::new(disks), &pw, &cache)?)
}

fn read_unlock(path: &Path) -> Result<ExportUnlock> {
    const AGAIN: &str = "write it again with `ferry export-job unlock NAME --out FILE`";
    let bytes = std::fs::read(path).with_context(|| format!("read the disk-unlock file {}", path.display()))?;
    let u: ExportUnlock =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not an export job's disk-unlock file: {AGAIN}", path.display()))?;
    if u.magic != EXPORT_UNLOCK_MAGIC || u.version != 1 {
        bail!("{} is not an export job's disk-unlock file (magic {:?}, version {}): {AGAIN}", path.display(), u.magic, u.version);
    }
    Ok(u)
}

/// A seed-disk error in the export job's terms.
fn explain(e: SeedError, job: &str) -> anyhow::Error {
    let unlock = format!("`ferry export-job unlock {job} --out FILE`");
    match e {
        SeedError::MissingDisks { numbers, count } => {
            let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
            let (noun, verb, them) = if numbers.len() == 1 { ("disk", "is", "it") } else { ("disks", "are", "them") };
            anyhow::anyhow!(
                "{noun} {} of {count} of export job {job} {verb} missing: mount {them} and add --from-disk PATH",
                list.join(", ")
            )
        }
        SeedError::ForeignDisk { path, job: other, .. } => {
            let whose = match other.strip_prefix("export:") {
                Some(name) => format!("export job {name}"),
                None => format!("import job {other}"),
            };
            anyhow::anyhow!("disk {} belongs to {whose}, not to export job {job} (the unlock file's): leave it out", path.display())
        }
        SeedError::KeyInvalid { path, disk, .. } => anyhow::anyhow!(
            "the unlock file does not open disk {} (disk {disk} of export job {job}): it is the unlock file of another job or \
             vault; get this job's with {unlock}",
            path.display()
        ),
        SeedError::Incomplete { path, disk, .. } => anyhow::anyhow!(
            "disk {} (disk {disk} of export job {job}) is of an unfinished export: the vault's site runs `ferry export run` again",
            path.display()
        ),
        other => anyhow::Error::new(other),
    }
}
