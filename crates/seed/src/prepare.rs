//! `ferry diskprep`: writing a staging location's objects onto a set of disks, resumably.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ferry_store::Store;

use crate::disk::{base_space, manifest_reserve, space_for, SeedDisk};
use crate::fsio::{self, MANIFEST_FILE, SEED_DIR};
use crate::import::read_manifest;
use crate::label::{check_job, read_label, Label};
use crate::manifest::{Manifest, ManifestEntry};
use crate::object;
use crate::{DiskKey, SeedError, MAX_DISKS, MAX_DISK_BYTES, MAX_SEED_BYTES};

/// One object of the staging location to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    /// Its key in the staging location (and in the machine's repository).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Commit order at ingest: 0 = packs (`data/`), 1 = index files, pack lists, config, keys,
    /// 2 = recovery points (last).
    pub phase: u8,
}

/// A disk to write to: a mounted folder, and optionally how many bytes to use on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskTarget {
    pub path: PathBuf,
    /// `None`: the free space minus 1 %, at most [`MAX_DISK_BYTES`](crate::MAX_DISK_BYTES).
    pub capacity: Option<u64>,
}

/// What [`prepare`] needs besides the source.
pub struct PrepareOptions<'a> {
    /// The import job's name.
    pub job: String,
    /// The job's disk key.
    pub key: &'a DiskKey,
    /// The disks, in the order new ones are used.
    pub disks: Vec<DiskTarget>,
    /// Asked before wiping a disk that is not empty and not of this set (another job or set,
    /// or foreign files): (disk path, human reason) -> true to wipe. `--yes` passes `|_, _| true`.
    pub confirm_wipe: &'a mut dyn FnMut(&Path, &str) -> bool,
    /// Called with the plaintext bytes done so far and the total, for a progress bar.
    pub progress: &'a mut dyn FnMut(u64, u64),
}

/// How [`prepare`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareOutcome {
    /// Every object is written and verified; labels carry the disk count; the manifest is on
    /// every disk.
    Complete(SetSummary),
    /// Out of disks: these many objects and plaintext bytes are still to write; rerun with the
    /// same disks and another one.
    NeedMoreDisks { objects: u64, bytes: u64, summary: SetSummary },
}

/// The disks of the set, by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSummary {
    pub set_id: [u8; 16],
    pub disks: Vec<DiskSummary>,
}

/// One disk of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSummary {
    pub number: u32,
    pub path: PathBuf,
    /// Objects on the disk.
    pub objects: u64,
    /// Bytes of the set's files on the disk (objects, label, journal, manifest).
    pub bytes: u64,
}

/// What was found on a given disk.
enum Found {
    /// Labeled for this job and verified with its key.
    Ours(Label),
    /// Nothing there (but perhaps `lost+found`).
    Empty,
    /// Something else: the reason to show when asking to wipe it, and the error if refused.
    Foreign(String, SeedError),
}

/// Writes `objects` of `source` (a staging location) onto the disks of `opts`, or resumes a
/// run that was interrupted: see the crate doc and `docs/design/offline-seeding.md`.
///
/// Disks labeled for this job's set keep their numbers and what their journals record is
/// skipped; unrecorded files on them are deleted. A disk of another job or set, or a folder with
/// other files, is wiped only if `confirm_wipe` agrees. Objects are placed largest first within
/// each phase onto the first disk of the set with room, a new disk being started (next number)
/// when none has. When everything is on the disks, the manifest is written to every disk, then
/// every label gets the disk count. A rerun of a complete set changes nothing.
pub fn prepare(source: &dyn Store, objects: &[SourceObject], opts: PrepareOptions) -> Result<PrepareOutcome, SeedError> {
    let PrepareOptions { job, key, disks: targets, confirm_wipe, progress } = opts;
    check_input(&job, objects, &targets)?;
    let total: u64 = objects.iter().map(|o| o.size).sum();

    // 1. What is on each disk; wipe what may be wiped.
    check_distinct(&targets)?;
    let mut found = Vec::with_capacity(targets.len());
    for t in &targets {
        found.push(inspect(&t.path, &job, key)?);
    }
    let set_id = majority_set(&found);
    let mut ours: Vec<(usize, Label)> = Vec::new();
    let mut fresh: Vec<usize> = Vec::new();
    for (i, f) in found.into_iter().enumerate() {
        let path = &targets[i].path;
        let f = match f {
            Found::Ours(label) if Some(label.set_id) != set_id => Found::Foreign(
                format!("it is a disk of another disk set of import job {job}"),
                SeedError::ForeignDisk {
                    path: path.clone(),
                    job: job.clone(),
                    expected_job: job.clone(),
                    detail: format!("another disk set (set {}) of import job {job}", hex::encode(label.set_id)),
                },
            ),
            other => other,
        };
        match f {
            Found::Ours(label) => ours.push((i, label)),
            Found::Empty => fresh.push(i),
            Found::Foreign(reason, refused) => {
                if !confirm_wipe(path, &reason) {
                    return Err(refused);
                }
                fsio::wipe(path)?;
                fresh.push(i);
            }
        }
    }

    // 2. The set so far: disks 1..=m, each once, none missing.
    ours.sort_by_key(|(_, l)| l.disk_number);
    let complete_count = check_numbers(&ours, &targets)?;
    let mut set: Vec<SeedDisk> = Vec::with_capacity(ours.len());
    for (i, label) in ours {
        set.push(SeedDisk::open(&targets[i].path, label, key, &job)?);
    }
    if let Some(last) = set.last() {
        if last.has_next {
            return Err(SeedError::MissingDisks { numbers: vec![last.label.disk_number + 1], count: complete_count });
        }
    }

    // 3. What is done, what is left.
    let mut done: HashMap<&str, (u32, u64)> = HashMap::new();
    let mut file_ids = HashSet::new();
    for d in &set {
        for r in &d.records {
            done.entry(r.key.as_str()).or_insert((d.label.disk_number, r.size));
            file_ids.insert(r.file);
        }
    }
    let mut pending: Vec<&SourceObject> = Vec::new();
    for o in objects {
        match done.get(o.key.as_str()) {
            Some(&(disk, size)) if size != o.size => {
                return Err(SeedError::SourceMismatch {
                    key: o.key.clone(),
                    reason: format!(
                        "it is {} bytes, but disk {disk} recorded {size} bytes: the staging location changed since diskprep began",
                        o.size
                    ),
                })
            }
            Some(_) => {}
            None => pending.push(o),
        }
    }
    pending.sort_by(|a, b| a.phase.cmp(&b.phase).then(b.size.cmp(&a.size)).then(a.key.cmp(&b.key)));
    let pending_bytes: u64 = pending.iter().map(|o| o.size).sum();
    if complete_count > 0 && !pending.is_empty() {
        return Err(SeedError::AlreadyComplete { job, objects: pending.len() as u64, bytes: pending_bytes });
    }

    // 4. Capacities, and every object must fit on the largest disk.
    let mut keys: HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    keys.extend(done.keys().copied());
    let reserve = manifest_reserve(&job, keys.into_iter());
    for d in &mut set {
        let capacity = targets.iter().find(|t| t.path == d.path).and_then(|t| t.capacity);
        d.account(capacity, reserve)?;
    }
    let mut fresh_caps = Vec::with_capacity(fresh.len());
    for &i in &fresh {
        fresh_caps.push((i, fresh_capacity(&targets[i])?));
    }
    let largest = set
        .iter()
        .map(|d| (d.capacity, d.path.clone()))
        .chain(fresh_caps.iter().map(|(i, c)| (*c, targets[*i].path.clone())))
        .max_by_key(|(c, _)| *c);
    if let Some((capacity, path)) = &largest {
        if let Some(o) = pending.iter().find(|o| base_space(reserve).saturating_add(space_for(&o.key, o.size)) > *capacity) {
            return Err(SeedError::ObjectTooLarge { key: o.key.clone(), size: o.size, path: path.clone(), capacity: *capacity });
        }
    }

    // 5. Write what is left, first fit in the set's disks, else a new disk.
    let mut done_bytes = total - pending_bytes;
    progress(done_bytes, total);
    let mut buf = Vec::new();
    let mut left: Vec<&SourceObject> = Vec::new();
    for o in pending {
        let at = if let Some(at) = set.iter().position(|d| d.fits(&o.key, o.size)) {
            at
        } else {
            let Some(pos) = fresh_caps.iter().position(|(_, c)| base_space(reserve).saturating_add(space_for(&o.key, o.size)) <= *c) else {
                left.push(o);
                continue;
            };
            let number = set.len() as u32 + 1;
            if number > MAX_DISKS {
                left.push(o);
                continue;
            }
            let (i, capacity) = fresh_caps.remove(pos);
            let set_id = set.first().map_or_else(ferry_crypto::random_bytes, |d| d.label.set_id);
            let label = Label::new(key, &job, set_id, number, 0, &now());
            let mut disk = SeedDisk::create(&targets[i].path, label, key, &job)?;
            disk.account(Some(capacity), reserve)?;
            // The new disk is labeled before the previous one records that it exists, so a
            // rerun that is given the previous disk but not this one is refused.
            if let Some(previous) = set.last_mut() {
                previous.note_next(number)?;
            }
            set.push(disk);
            set.len() - 1
        };
        let base = done_bytes;
        set[at].write_object(source, key, o, &mut file_ids, &mut buf, &mut |n| progress(base + n, total))?;
        done_bytes += o.size;
        progress(done_bytes, total);
    }
    if !left.is_empty() {
        if set.len() as u32 == MAX_DISKS {
            return Err(SeedError::TooManyDisks { count: MAX_DISKS + 1 });
        }
        let summary = summary(&set);
        return Ok(PrepareOutcome::NeedMoreDisks { objects: left.len() as u64, bytes: left.iter().map(|o| o.size).sum(), summary });
    }
    if set.is_empty() {
        // Nothing to carry, but a set needs a disk to hold its manifest.
        let Some((i, _)) = fresh_caps.first() else {
            return Ok(PrepareOutcome::NeedMoreDisks { objects: 0, bytes: 0, summary: summary(&set) });
        };
        let label = Label::new(key, &job, ferry_crypto::random_bytes(), 1, 0, &now());
        set.push(SeedDisk::create(&targets[*i].path, label, key, &job)?);
    }

    // 6. Commit: the manifest on every disk, then the disk count in every label. A label with
    // a count MUST only exist once every disk has the manifest (the import trusts a counted
    // label to come with a manifest).
    finish(&mut set, key, &job)?;
    Ok(PrepareOutcome::Complete(summary(&set)))
}

fn check_input(job: &str, objects: &[SourceObject], targets: &[DiskTarget]) -> Result<(), SeedError> {
    let invalid = |reason: String| Err(SeedError::InvalidInput { reason });
    if let Err(reason) = check_job(job) {
        return invalid(reason);
    }
    if targets.len() as u64 > u64::from(MAX_DISKS) {
        return Err(SeedError::TooManyDisks { count: targets.len() as u32 });
    }
    let mut keys = HashSet::with_capacity(objects.len());
    let mut total: u64 = 0;
    for o in objects {
        ferry_store::validate_key("diskprep", &o.key).map_err(|e| SeedError::InvalidInput { reason: e.to_string() })?;
        if !keys.insert(o.key.as_str()) {
            return invalid(format!("object {} listed twice", o.key));
        }
        if o.phase > 2 {
            return invalid(format!("object {} has phase {}", o.key, o.phase));
        }
        if o.size > MAX_DISK_BYTES {
            let path = targets.first().map(|t| t.path.clone()).unwrap_or_default();
            return Err(SeedError::ObjectTooLarge { key: o.key.clone(), size: o.size, path, capacity: MAX_DISK_BYTES });
        }
        total = total.saturating_add(o.size);
    }
    if total > MAX_SEED_BYTES {
        return Err(SeedError::SeedTooLarge { bytes: total });
    }
    Ok(())
}

/// Each folder once.
fn check_distinct(targets: &[DiskTarget]) -> Result<(), SeedError> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    for t in targets {
        let meta = std::fs::metadata(&t.path).map_err(|e| SeedError::io("open disk folder", &t.path, e))?;
        if !meta.is_dir() {
            return Err(SeedError::io("open disk folder", &t.path, std::io::Error::other("not a folder")));
        }
        let canonical = std::fs::canonicalize(&t.path).map_err(|e| SeedError::io("resolve", &t.path, e))?;
        if let Some(first) = seen.insert(canonical, &t.path) {
            let number = read_label(&t.path).map_or(0, |l| l.disk_number);
            return Err(SeedError::DuplicateDisk { number, first: first.to_path_buf(), second: t.path.clone() });
        }
    }
    Ok(())
}

fn inspect(path: &Path, job: &str, key: &DiskKey) -> Result<Found, SeedError> {
    let foreign = |reason: String, detail: String, label_job: &str| {
        Found::Foreign(
            reason,
            SeedError::ForeignDisk { path: path.to_path_buf(), job: label_job.to_string(), expected_job: job.to_string(), detail },
        )
    };
    match read_label(path) {
        Ok(label) if label.job == job && label.verify(key) => Ok(Found::Ours(label)),
        Ok(label) if label.job == job => Ok(foreign(
            format!("it is labeled for import job {job} but not with this job's disk key (an earlier job of the same name?)"),
            format!("an earlier import job named {job} (its label does not verify with this job's disk key)"),
            &label.job,
        )),
        Ok(label) => Ok(foreign(format!("it is a seed disk of import job {}", label.job), format!("import job {}", label.job), &label.job)),
        Err(SeedError::LabelDamaged { reason, .. }) => Ok(foreign(
            format!("it has a damaged seed label ({reason})"),
            format!("an unknown disk set (its label is damaged: {reason})"),
            "",
        )),
        Err(SeedError::NotASeedDisk { .. }) => {
            if fsio::is_empty_disk(path)? {
                Ok(Found::Empty)
            } else {
                Ok(Found::Foreign(
                    "it is not empty and not a Ferry seed disk".into(),
                    SeedError::NotEmpty { path: path.to_path_buf(), job: job.to_string() },
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// The set id most of this job's disks carry (the first one's on a tie), if any.
fn majority_set(found: &[Found]) -> Option<[u8; 16]> {
    let mut counts: Vec<([u8; 16], usize)> = Vec::new();
    for f in found {
        if let Found::Ours(l) = f {
            match counts.iter_mut().find(|(id, _)| *id == l.set_id) {
                Some((_, n)) => *n += 1,
                None => counts.push((l.set_id, 1)),
            }
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(id, _)| id)
}

/// Checks that the set's disks (sorted by number) are 1..=m, each once. Returns the disk count
/// of a completed set (0 if none of its labels has one yet).
fn check_numbers(ours: &[(usize, Label)], targets: &[DiskTarget]) -> Result<u32, SeedError> {
    for pair in ours.windows(2) {
        let ((a, la), (b, lb)) = (&pair[0], &pair[1]);
        if la.disk_number == lb.disk_number {
            return Err(SeedError::DuplicateDisk {
                number: la.disk_number,
                first: targets[*a].path.clone(),
                second: targets[*b].path.clone(),
            });
        }
    }
    let counts: HashSet<u32> = ours.iter().map(|(_, l)| l.disk_count).filter(|c| *c > 0).collect();
    if counts.len() > 1 {
        let (i, l) = ours.iter().find(|(_, l)| l.disk_count > 0).map_or((0, &ours[0].1), |(i, l)| (*i, l));
        return Err(SeedError::LabelDamaged {
            path: targets[i].path.clone(),
            reason: format!("the set's labels disagree on the disk count (this one says {})", l.disk_count),
        });
    }
    let count = counts.into_iter().next().unwrap_or(0);
    let highest = ours.last().map_or(0, |(_, l)| l.disk_number).max(count);
    let have: HashSet<u32> = ours.iter().map(|(_, l)| l.disk_number).collect();
    let missing: Vec<u32> = (1..=highest).filter(|n| !have.contains(n)).collect();
    if !missing.is_empty() {
        return Err(SeedError::MissingDisks { numbers: missing, count });
    }
    Ok(count)
}

fn fresh_capacity(t: &DiskTarget) -> Result<u64, SeedError> {
    if let Some(c) = t.capacity {
        Ok(c.min(MAX_DISK_BYTES))
    } else {
        let st = rustix::fs::statvfs(&t.path).map_err(|e| SeedError::io("measure free space of", &t.path, e.into()))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        Ok((free - free / 100).min(MAX_DISK_BYTES))
    }
}

/// Writes the manifest to every disk that does not hold it yet, then the disk count into every
/// label that does not carry it yet.
fn finish(set: &mut [SeedDisk], key: &DiskKey, job: &str) -> Result<(), SeedError> {
    let count = set.len() as u32;
    let set_id = set[0].label.set_id;
    let mut entries: Vec<ManifestEntry> = Vec::new();
    let mut seen = HashSet::new();
    for d in set.iter() {
        for r in &d.records {
            // A key recorded on two disks (possible only after odd reruns) is taken from the first.
            if seen.insert(r.key.clone()) {
                entries.push(ManifestEntry {
                    key: r.key.clone(),
                    size: r.size,
                    hash: r.hash,
                    disk: d.label.disk_number,
                    file: object::file_name(&r.file),
                });
            }
        }
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let manifest = Manifest { job: job.to_string(), set_id, disk_count: count, entries };
    let mut sealed: Option<Vec<u8>> = None;
    for d in set.iter() {
        let number = d.label.disk_number;
        if matches!(read_manifest(&d.path, number, key, &set_id), Ok(m) if m == manifest) {
            continue;
        }
        let bytes = sealed.get_or_insert_with(|| manifest.seal(key));
        fsio::atomic_write(&d.path.join(SEED_DIR), MANIFEST_FILE, bytes)?;
    }
    // Every manifest MUST be durable before any label carries the count.
    for d in set.iter_mut() {
        d.set_count(key, count)?;
    }
    Ok(())
}

fn summary(set: &[SeedDisk]) -> SetSummary {
    SetSummary {
        set_id: set.first().map(|d| d.label.set_id).unwrap_or_default(),
        disks: set
            .iter()
            .map(|d| DiskSummary {
                number: d.label.disk_number,
                path: d.path.clone(),
                objects: d.records.len() as u64,
                bytes: d.bytes_on_disk(),
            })
            .collect(),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The BLAKE3 a staging object's key names, for the objects named by the hash of their bytes:
/// packs `data/XX/<hex>`, index files `index/<hex>`, recovery points `recovery-points/<hex>`.
pub(crate) fn named_hash(key: &str) -> Option<[u8; 32]> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        ["data", dir, name] if dir.len() == 2 && name.starts_with(dir) => name,
        ["index" | "recovery-points", name] => name,
        _ => return None,
    };
    crate::label::parse_hex(name)
}

/// Test-only crash injection: make the n-th object of a run "crash" after its file is written
/// (before its journal record), or after its journal record.
#[cfg(test)]
pub(crate) mod test_hooks {
    use std::cell::Cell;

    use crate::SeedError;

    thread_local! {
        static WRITTEN: Cell<u64> = const { Cell::new(0) };
        static JOURNALED: Cell<u64> = const { Cell::new(0) };
        static CRASH_BEFORE_JOURNAL: Cell<Option<u64>> = const { Cell::new(None) };
        static CRASH_AFTER_JOURNAL: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// Resets the counters; crash when the `before`-th object file is written (before its
    /// journal record) or the `after`-th object is journaled.
    pub(crate) fn arm(before: Option<u64>, after: Option<u64>) {
        WRITTEN.set(0);
        JOURNALED.set(0);
        CRASH_BEFORE_JOURNAL.set(before);
        CRASH_AFTER_JOURNAL.set(after);
    }

    /// Object files written since `arm`.
    pub(crate) fn written() -> u64 {
        WRITTEN.get()
    }

    fn crash() -> SeedError {
        SeedError::Io { path: "test".into(), op: "simulated crash", source: std::io::Error::other("crash") }
    }

    pub(crate) fn object_written() -> Result<(), SeedError> {
        WRITTEN.set(WRITTEN.get() + 1);
        if CRASH_BEFORE_JOURNAL.get() == Some(WRITTEN.get()) {
            return Err(crash());
        }
        Ok(())
    }

    pub(crate) fn object_journaled() -> Result<(), SeedError> {
        JOURNALED.set(JOURNALED.get() + 1);
        if CRASH_AFTER_JOURNAL.get() == Some(JOURNALED.get()) {
            return Err(crash());
        }
        Ok(())
    }
}
