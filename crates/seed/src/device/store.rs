//! [`DeviceStore`]: the agent's view of the devices of its job while its first backup writes
//! onto them, as one [`Store`], and the sealing at the end.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use ferry_store::{validate_key, ObjectInfo, Store, StoreError};

use super::{
    check_distinct, check_job, check_one_set, shown, verified_headers, walk, DeviceHeader, Kind, Seal, SealEntry, DEVICE_DIR, HEADER_FILE,
    REPO_DIR, SEAL_FILE,
};
use crate::fsio::{self, TMP_SUFFIX};
use crate::{DiskKey, SeedError};

/// Space kept on every device for its header, the seal's fixed part and the object folders.
const BASE_RESERVE: u64 = 4096 + (64 << 10) + (1 << 20);
/// Seal bytes counted per object at least (an entry is its key, size, hash and device).
const ENTRY_RESERVE: u64 = 160;
/// Allocation unit assumed for every file.
const BLOCK: u64 = 4096;
/// Bytes read at a time when an object is hashed for the seal.
const PIECE: u64 = 8 << 20;
/// Writers of one key are serialized by one of these locks (chosen by the key's hash).
const STRIPES: usize = 64;

/// Space an object's file takes.
fn blocks(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// Seal bytes counted for an object: on every device, since every device carries the whole
/// seal.
fn entry_space(key: &str) -> u64 {
    ENTRY_RESERVE.max(key.len() as u64 + 64)
}

/// The repository's `config` and key files: read from the vault, never written to a device.
fn is_key_material(key: &str) -> bool {
    key == "config" || key.starts_with("keys/")
}

/// One or more devices of a device job, opened by the machine's agent for its first backup:
/// a [`Store`] whose objects go onto the devices, except the repository's `config` and
/// `keys/…`, which are read from `keys_from` (the machine's repository in the vault) and are
/// never written.
///
/// Reads (`get`, `get_range`, `get_range_into`, `head`) take the object from the first device
/// that has it; `list` joins every device's list (and `config` and `keys/…` from the vault
/// where the prefix can match them). A new object goes onto the first device, by number, with
/// room for it; its space is reserved atomically before it is written and released if the
/// write fails; `put` of an object a device has replaces it there. Writes of one key are
/// serialized, so an object is never on two devices. When no device has room, the write fails
/// with a `Permanent` error that says to prepare another device or use the disk workflow.
///
/// After [`DeviceStore::seal`] every write is refused.
#[derive(Debug)]
pub struct DeviceStore {
    job: String,
    key: DiskKey,
    set_id: [u8; 16],
    /// By device number.
    devices: Vec<Device>,
    keys_from: Arc<dyn Store>,
    stripes: Vec<Mutex<()>>,
    sealed: AtomicBool,
}

#[derive(Debug)]
struct Device {
    /// As given, for messages.
    path: PathBuf,
    header: DeviceHeader,
    store: Arc<dyn Store>,
    /// Bytes usable.
    capacity: u64,
    /// Bytes counted as used: reserves, object files rounded up to blocks, seal entries.
    used: AtomicU64,
}

impl Device {
    /// Counts `n` more bytes if they fit.
    fn try_reserve(&self, n: u64) -> bool {
        self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| u.checked_add(n).filter(|total| *total <= self.capacity)).is_ok()
    }

    /// Counts `n` more bytes, fitting or not (a seal entry on the devices that do not hold the
    /// object; the 1 % kept free of every file system covers it).
    fn charge(&self, n: u64) {
        self.used.fetch_add(n, Ordering::SeqCst);
    }

    fn release(&self, n: u64) {
        let _ = self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| Some(u.saturating_sub(n)));
    }
}

impl DeviceStore {
    /// Opens `paths`, devices of job `job` bound to machine `machine`, for writing; they are
    /// used in device-number order. `keys_from` serves `config` and `keys/…`.
    ///
    /// In order: every path has a header (`NotADevice`; `DeviceHeaderDamaged`); each header
    /// verifies with `key` (`DeviceKeyInvalid`), names `job` and `machine` (`ForeignDevice`)
    /// and the same device set (`ForeignDevice` for the devices outside the set most of them
    /// belong to); no folder and no device number twice (`DuplicateDisk`); no device sealed
    /// (`AlreadySealed`).
    ///
    /// A device's capacity is its header's (if stated), at most what the job's files there
    /// take plus the free space of its file system minus 1 %. Every device keeps room for its
    /// header, the object folders and the seal.
    pub fn open(paths: &[PathBuf], key: &DiskKey, job: &str, machine: &str, keys_from: Arc<dyn Store>) -> Result<DeviceStore, SeedError> {
        let mut found = verified_headers(paths, key)?;
        check_job(&found, job, |h| format!(", or use it with the unlock file of job {}", h.job))?;
        for (path, h) in &found {
            if h.machine != machine {
                return Err(SeedError::ForeignDevice {
                    path: path.clone(),
                    job: h.job.clone(),
                    device: h.device_number,
                    reason: format!(
                        "is bound to machine {} (ID {}), not to this machine: only that machine's agent may write it; use a device prepared for this machine",
                        h.machine_name, h.machine
                    ),
                });
            }
        }
        let set_id = check_one_set(&found, job, ", or erase it and prepare it again")?;
        check_distinct(&found)?;
        for (path, h) in &found {
            if path.join(DEVICE_DIR).join(SEAL_FILE).exists() {
                return Err(SeedError::AlreadySealed { path: path.clone(), device: h.device_number, job: job.to_string() });
            }
        }
        found.sort_by_key(|(_, h)| h.device_number);
        let mut devices = Vec::with_capacity(found.len());
        let mut all_entries = 0u64;
        for (path, header) in found {
            let (device, entries) = open_device(path, header)?;
            all_entries = all_entries.saturating_add(entries);
            devices.push(device);
        }
        // Every device carries the whole seal: each counts every object's entry.
        for d in &devices {
            d.charge(all_entries);
        }
        Ok(DeviceStore {
            job: job.to_string(),
            key: key.clone(),
            set_id,
            devices,
            keys_from,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            sealed: AtomicBool::new(false),
        })
    }

    /// (bytes counted as used, bytes usable), summed over the devices. Used counts the
    /// objects' files rounded up to 4 KiB and the room kept for headers, folders and seals.
    pub fn space(&self) -> (u64, u64) {
        self.devices.iter().fold((0u64, 0u64), |(u, c), d| (u.saturating_add(d.used.load(Ordering::SeqCst)), c.saturating_add(d.capacity)))
    }

    /// The capacity ordered for the devices (their headers' capacities summed; 0 for a device
    /// whose header states none).
    pub fn ordered(&self) -> u64 {
        self.devices.iter().fold(0u64, |c, d| c.saturating_add(d.header.capacity))
    }

    /// The devices' folders, by device number.
    pub fn paths(&self) -> Vec<&Path> {
        self.devices.iter().map(|d| d.path.as_path()).collect()
    }

    /// Seals the devices: lists every object on every device (its BLAKE3 taken from its name
    /// for packs, index files and recovery points, else read and hashed), writes the same
    /// [`Seal`] (device count = the devices opened) as `FERRY-DEVICE/seal.bin` on each, and
    /// returns it. `sealed` is the time to record (RFC 3339). After this, writes are refused.
    ///
    /// Refused (`InvalidInput`, no device sealed): device numbers not exactly 1..=n (sealing
    /// needs every device the backup wrote), an object under `locks/` (a command still holds
    /// the repository), a file under `FERRY-DEVICE` that is no object (leftover staging and
    /// temporary files are deleted instead), `config` or a key file on a device. An object
    /// found on two devices (written again by a run without the first device) is kept on the
    /// first and deleted from the other if both copies hash alike, else refused.
    ///
    /// Every seal is first written to `seal.bin.tmp` and fsynced on every device, then renamed
    /// to `seal.bin` on each (and the folder fsynced): a crash leaves at most a short window in
    /// which some devices are sealed and others not.
    pub fn seal(&self, sealed: &str) -> Result<Seal, SeedError> {
        if sealed.len() > 64 || chrono::DateTime::parse_from_rfc3339(sealed).is_err() {
            return Err(SeedError::InvalidInput { reason: format!("seal time {sealed:?} is not an RFC 3339 time") });
        }
        let count = self.devices.len() as u32;
        let numbers: HashSet<u32> = self.devices.iter().map(|d| d.header.device_number).collect();
        let missing: Vec<String> = (1..=self.devices.last().map_or(0, |d| d.header.device_number))
            .filter(|n| !numbers.contains(n))
            .map(|n| n.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(SeedError::InvalidInput {
                reason: format!(
                    "device(s) {} of job {} not given: sealing needs every device of the job the backup wrote to; pass each with --device",
                    missing.join(", "),
                    self.job
                ),
            });
        }
        // No write runs while sealing (writers hold one stripe at a time; this takes them all
        // in order).
        let _held: Vec<MutexGuard<'_, ()>> =
            self.stripes.iter().map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).collect();
        let mut entries: Vec<SealEntry> = Vec::new();
        let mut where_: HashMap<String, usize> = HashMap::new();
        let mut buf = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let number = d.header.device_number;
            let objects = self.device_objects(d)?;
            for o in objects {
                let hash = match crate::prepare::named_hash(&o.key) {
                    Some(h) => h,
                    None => hash_object(d, &o.key, o.size, &mut buf)?,
                };
                if let Some(&first) = where_.get(&o.key) {
                    let kept = &entries[first];
                    if kept.hash != hash || kept.size != o.size {
                        return Err(SeedError::InvalidInput {
                            reason: format!(
                                "object {} is on device {} and, with other bytes, on device {number} ({}): remove the wrong copy, then seal again",
                                o.key,
                                kept.device,
                                d.path.display()
                            ),
                        });
                    }
                    // A second copy of the same bytes (written again by a run without the first
                    // device): the first is kept.
                    d.store.delete(&o.key).map_err(|e| store_error("delete a second copy on", &d.path, e))?;
                    self.unplace(i, &o.key, o.size);
                    continue;
                }
                where_.insert(o.key.clone(), entries.len());
                entries.push(SealEntry { key: o.key, size: o.size, hash, device: number });
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let seal = Seal { job: self.job.clone(), set_id: self.set_id, device_count: count, sealed: sealed.to_string(), entries };
        let tmp_name = format!("{SEAL_FILE}{TMP_SUFFIX}");
        for d in &self.devices {
            let dir = d.path.join(DEVICE_DIR);
            write_synced(&dir.join(&tmp_name), &seal.encode(&self.key, d.header.device_number))?;
        }
        // Every seal MUST be durable under its temporary name before any is renamed.
        for d in &self.devices {
            let dir = d.path.join(DEVICE_DIR);
            std::fs::rename(dir.join(&tmp_name), dir.join(SEAL_FILE)).map_err(|e| SeedError::io("rename", &dir.join(&tmp_name), e))?;
            fsio::fsync_dir(&dir)?;
        }
        self.sealed.store(true, Ordering::SeqCst);
        Ok(seal)
    }

    /// A device's objects, sorted by key, after checking its files: each is the header, an
    /// object the store lists, or a leftover temporary file (deleted).
    fn device_objects(&self, d: &Device) -> Result<Vec<ObjectInfo>, SeedError> {
        let dir = d.path.join(DEVICE_DIR);
        let mut objects = d.store.list("").map_err(|e| store_error("list the objects of", &d.path, e))?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let refuse = |what: String| SeedError::InvalidInput {
            reason: format!("device {} (device {}): {what}", d.path.display(), d.header.device_number),
        };
        if let Some(lock) = objects.iter().find(|o| o.key.starts_with("locks/")) {
            return Err(refuse(format!(
                "the repository lock {} is still there: a command holds the repository (or was killed); let it finish or remove the stale lock, then seal again",
                lock.key
            )));
        }
        if let Some(o) = objects.iter().find(|o| is_key_material(&o.key)) {
            return Err(refuse(format!("it holds {}, which never goes onto a device: delete it, then seal again", o.key)));
        }
        let listed: HashMap<String, u64> = objects.iter().map(|o| (format!("{REPO_DIR}/{}", o.key), o.size)).collect();
        let mut seen = 0usize;
        for f in walk(&dir)? {
            if f.rel == HEADER_FILE {
                continue;
            }
            if let Some(&size) = listed.get(&f.rel) {
                if f.kind != Kind::File || f.len != size {
                    return Err(refuse(format!("{} is not the plain file of {} bytes its store lists", shown(&f.rel), size)));
                }
                seen += 1;
                continue;
            }
            // The object store's staging files (`KEY#N`; keys have no '#') and our own
            // temporary files are what a crash leaves behind.
            let leftover = f.kind == Kind::File
                && ((f.rel.starts_with(&format!("{REPO_DIR}/")) && f.rel.contains('#'))
                    || (!f.rel.contains('/') && f.rel.ends_with(TMP_SUFFIX)));
            if leftover {
                std::fs::remove_file(&f.path).map_err(|e| SeedError::io("remove leftover", &f.path, e))?;
                continue;
            }
            return Err(refuse(format!("{} is not an object of the backup: remove it, then seal again", shown(&f.rel))));
        }
        if seen != listed.len() {
            return Err(refuse("its store lists objects that are not plain files under FERRY-DEVICE/repo".into()));
        }
        Ok(objects)
    }

    /// The stripe lock of `key`.
    fn stripe(&self, key: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.stripes[(h.finish() % STRIPES as u64) as usize].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses writes of `config` and keys, and writes after sealing.
    fn check_write(&self, op: &'static str, key: &str) -> ferry_store::Result<()> {
        if is_key_material(key) {
            return Err(StoreError::permanent(op, key, "a seed device does not hold the repository's config or keys"));
        }
        if self.sealed.load(Ordering::SeqCst) {
            return Err(StoreError::permanent(op, key, "the seed devices are sealed: nothing more may be written to them"));
        }
        validate_key(op, key)
    }

    /// The device (index) holding `key`, and its size.
    fn find(&self, key: &str) -> ferry_store::Result<Option<(usize, u64)>> {
        for (i, d) in self.devices.iter().enumerate() {
            if let Some(size) = d.store.head(key)? {
                return Ok(Some((i, size)));
            }
        }
        Ok(None)
    }

    /// Reserves room for a new object on the first device with room: its file there, its seal
    /// entry on every device. Returns the device's index.
    fn place(&self, op: &'static str, key: &str, size: u64) -> ferry_store::Result<usize> {
        let entry = entry_space(key);
        let Some(i) = self.devices.iter().position(|d| d.try_reserve(blocks(size).saturating_add(entry))) else {
            return Err(self.full(op, key, size));
        };
        for (j, d) in self.devices.iter().enumerate() {
            if j != i {
                d.charge(entry);
            }
        }
        Ok(i)
    }

    /// Undoes [`place`](Self::place) (or accounts a deleted object).
    fn unplace(&self, i: usize, key: &str, size: u64) {
        let entry = entry_space(key);
        for (j, d) in self.devices.iter().enumerate() {
            d.release(if j == i { blocks(size).saturating_add(entry) } else { entry });
        }
    }

    fn full(&self, op: &'static str, key: &str, size: u64) -> StoreError {
        let (used, capacity) = self.space();
        let on: Vec<String> = self.devices.iter().map(|d| format!("{} ({})", d.header.device_number, d.path.display())).collect();
        StoreError::permanent(
            op,
            key,
            format!(
                "the seed device(s) are full: object {key} ({size} bytes) does not fit ({used} of {capacity} bytes used on device(s) {}): \
                 prepare another device of job {} (`ferry device prepare`) and pass it too (--device for each device), \
                 or seed the rest with the disk workflow (ferry backup --offline)",
                on.join(", "),
                self.job
            ),
        )
    }

    /// Writes a new object with `write` on the device [`place`](Self::place) picks.
    fn write_new(
        &self,
        op: &'static str,
        key: &str,
        data: Bytes,
        write: impl FnOnce(&dyn Store, Bytes) -> ferry_store::Result<bool>,
    ) -> ferry_store::Result<bool> {
        let size = data.len() as u64;
        let i = self.place(op, key, size)?;
        match write(self.devices[i].store.as_ref(), data) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.unplace(i, key, size);
                Ok(false)
            }
            Err(e) => {
                self.unplace(i, key, size);
                Err(e)
            }
        }
    }
}

impl Store for DeviceStore {
    fn put(&self, key: &str, data: Bytes) -> ferry_store::Result<()> {
        // Checked under the key's lock: a write waiting while the devices are sealed is refused.
        let _writing = self.stripe(key);
        self.check_write("put", key)?;
        let Some((i, old)) = self.find(key)? else {
            return self.write_new("put", key, data, |s, d| s.put(key, d).map(|()| true)).map(|_| ());
        };
        let d = &self.devices[i];
        let (new, old) = (blocks(data.len() as u64), blocks(old));
        if new > old && !d.try_reserve(new - old) {
            return Err(self.full("put", key, data.len() as u64));
        }
        match d.store.put(key, data) {
            Ok(()) => {
                d.release(old.saturating_sub(new));
                Ok(())
            }
            Err(e) => {
                d.release(new.saturating_sub(old));
                Err(e)
            }
        }
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> ferry_store::Result<bool> {
        // Checked under the key's lock: a write waiting while the devices are sealed is refused.
        let _writing = self.stripe(key);
        self.check_write("put_if_absent", key)?;
        if self.find(key)?.is_some() {
            return Ok(false);
        }
        self.write_new("put_if_absent", key, data, |s, d| s.put_if_absent(key, d))
    }

    fn get(&self, key: &str) -> ferry_store::Result<Bytes> {
        if is_key_material(key) {
            return self.keys_from.get(key);
        }
        for d in &self.devices {
            match d.store.get(key) {
                Err(e) if e.is_not_found() => continue,
                other => return other,
            }
        }
        Err(StoreError::not_found("get", key))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> ferry_store::Result<Bytes> {
        if is_key_material(key) {
            return self.keys_from.get_range(key, range);
        }
        for d in &self.devices {
            match d.store.get_range(key, range.clone()) {
                Err(e) if e.is_not_found() => continue,
                other => return other,
            }
        }
        Err(StoreError::not_found("get_range", key))
    }

    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> ferry_store::Result<()> {
        if is_key_material(key) {
            return self.keys_from.get_range_into(key, range, buf);
        }
        for d in &self.devices {
            match d.store.get_range_into(key, range.clone(), buf) {
                Err(e) if e.is_not_found() => continue,
                other => return other,
            }
        }
        Err(StoreError::not_found("get_range", key))
    }

    fn head(&self, key: &str) -> ferry_store::Result<Option<u64>> {
        if is_key_material(key) {
            return self.keys_from.head(key);
        }
        Ok(self.find(key)?.map(|(_, size)| size))
    }

    fn list(&self, prefix: &str) -> ferry_store::Result<Vec<ObjectInfo>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for d in &self.devices {
            for o in d.store.list(prefix)? {
                if !is_key_material(&o.key) && seen.insert(o.key.clone()) {
                    out.push(o);
                }
            }
        }
        if "config".starts_with(prefix) {
            out.extend(self.keys_from.list("config")?.into_iter().filter(|o| o.key == "config"));
        }
        let keys_prefix = if prefix.starts_with("keys/") { Some(prefix) } else { "keys/".starts_with(prefix).then_some("keys/") };
        if let Some(p) = keys_prefix {
            out.extend(self.keys_from.list(p)?.into_iter().filter(|o| o.key.starts_with("keys/") && o.key.starts_with(prefix)));
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> ferry_store::Result<()> {
        // Checked under the key's lock: a write waiting while the devices are sealed is refused.
        let _writing = self.stripe(key);
        self.check_write("delete", key)?;
        for (i, d) in self.devices.iter().enumerate() {
            if let Some(size) = d.store.head(key)? {
                d.store.delete(key)?;
                self.unplace(i, key, size);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let paths: Vec<String> = self.devices.iter().map(|d| d.path.display().to_string()).collect();
        format!("seed device(s) {} of device job {}", paths.join(", "), self.job)
    }
}

/// Opens one device's object store and counts its space. Returns the device and the number
/// of seal-entry bytes its objects need (on every device).
fn open_device(path: PathBuf, header: DeviceHeader) -> Result<(Device, u64), SeedError> {
    let dir = path.join(DEVICE_DIR);
    let repo = std::fs::canonicalize(&dir).map_err(|e| SeedError::io("resolve", &dir, e))?.join(REPO_DIR);
    let Some(location) = repo.to_str() else {
        return Err(SeedError::InvalidInput {
            reason: format!("device path {} is not valid UTF-8: mount the device at a plain path", path.display()),
        });
    };
    let store = ferry_store::open(location).map_err(|e| store_error("open the object folder of", &path, e))?;
    let mut own = 0u64;
    let mut entries = 0u64;
    for o in store.list("").map_err(|e| store_error("list the objects of", &path, e))? {
        own = own.saturating_add(blocks(o.size));
        entries = entries.saturating_add(entry_space(&o.key));
    }
    let ours: u64 = walk(&dir)?.iter().map(|f| f.len).sum();
    let st = rustix::fs::statvfs(&path).map_err(|e| SeedError::io("measure free space of", &path, e.into()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let auto = (free - free / 100).saturating_add(ours);
    let capacity = if header.capacity > 0 { header.capacity.min(auto) } else { auto };
    let used = AtomicU64::new(BASE_RESERVE.saturating_add(own));
    Ok((Device { path, header, store, capacity, used }, entries))
}

/// BLAKE3 of an object read from a device, in pieces.
fn hash_object(d: &Device, key: &str, size: u64, buf: &mut Vec<u8>) -> Result<[u8; 32], SeedError> {
    let mut hasher = blake3::Hasher::new();
    let mut at = 0;
    while at < size {
        let end = (at + PIECE).min(size);
        d.store.get_range_into(key, at..end, buf).map_err(|e| store_error("read an object of", &d.path, e))?;
        hasher.update(buf);
        at = end;
    }
    Ok(*hasher.finalize().as_bytes())
}

/// Creates `path` with `data`, fsynced.
fn write_synced(path: &Path, data: &[u8]) -> Result<(), SeedError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| SeedError::io("create", path, e))?;
    f.write_all(data).map_err(|e| SeedError::io("write", path, e))?;
    f.sync_all().map_err(|e| SeedError::io("fsync", path, e))
}

/// A store error on a device, as the file error it is.
fn store_error(op: &'static str, device: &Path, e: StoreError) -> SeedError {
    SeedError::io(op, device, std::io::Error::other(e))
}
