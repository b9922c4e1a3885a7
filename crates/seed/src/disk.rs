//! One disk of a set being prepared: opening it (journal, leftovers), space accounting, and
//! writing one object onto it, verified.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use ferry_store::Store;

use crate::fsio::{self, JOURNAL_FILE, LABEL_FILE, MANIFEST_FILE, OBJECTS_DIR, SEED_DIR, TMP_SUFFIX};
use crate::journal::{self, Entry, JournalWriter, ObjectRecord};
use crate::label::{write_label, Label};
use crate::object::{self, ObjectHeader, Sealer};
use crate::{DiskKey, SeedError, SourceObject};

/// Space kept on every disk for its label.
const LABEL_RESERVE: u64 = 4096;
/// Space counted for a journal record beyond its object key.
const RECORD_RESERVE: u64 = 128;
/// Allocation unit assumed for every file.
const BLOCK: u64 = 4096;
/// Bytes read from the staging location at a time.
const PIECE: u64 = 8 << 20;
/// Largest journal read (a record is at most 4 KiB; 10 TB of 1-byte objects is not a case).
const MAX_JOURNAL_LEN: u64 = 4 << 30;

pub(crate) fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// Space an object takes on a disk, its journal record included.
pub(crate) fn space_for(key: &str, size: u64) -> u64 {
    round_up(object::stored_size(size)).saturating_add(key.len() as u64 + RECORD_RESERVE)
}

/// Space a disk with no object uses: label, journal header, and room for the whole manifest
/// (`manifest_reserve`, the same on every disk).
pub(crate) fn base_space(manifest_reserve: u64) -> u64 {
    LABEL_RESERVE + BLOCK + manifest_reserve
}

/// Room for a manifest of these object keys.
pub(crate) fn manifest_reserve<'a>(job: &str, keys: impl Iterator<Item = &'a str>) -> u64 {
    // Per entry: key and its length, size (≤ 10), hash (32), disk (1), file (8): key + 64 is
    // generous. Plus header, nonce, tag, job and set id.
    round_up(keys.fold(256 + job.len() as u64, |acc, k| acc + k.len() as u64 + 64))
}

/// A disk of the set being prepared.
pub(crate) struct SeedDisk {
    pub path: PathBuf,
    pub label: Label,
    pub capacity: u64,
    /// Space counted as used (reserves and rounded object files).
    pub used: u64,
    /// Objects verified on this disk, in journal order.
    pub records: Vec<ObjectRecord>,
    /// Does the journal record that a next disk was started?
    pub has_next: bool,
    journal: JournalWriter,
}

impl SeedDisk {
    /// Opens a disk labeled for this set: reads its journal (a torn last record is cut off),
    /// deletes leftovers (files in `objects/` that no record names, temporary files), and
    /// checks that every recorded file is there with its size.
    pub(crate) fn open(path: &Path, label: Label, key: &DiskKey, job: &str) -> Result<SeedDisk, SeedError> {
        let seed = path.join(SEED_DIR);
        let objects = seed.join(OBJECTS_DIR);
        fsio::ensure_dir(&objects)?;
        let number = label.disk_number;
        let journal_path = seed.join(JOURNAL_FILE);
        let damaged = |reason: String| SeedError::JournalDamaged { path: path.to_path_buf(), disk: number, reason };
        let bytes = match fsio::read_limited(&journal_path, MAX_JOURNAL_LEN) {
            Ok(Some(bytes)) => bytes,
            // The label is written before the journal: a crash between leaves no journal.
            Ok(None) => {
                fsio::atomic_write(&seed, JOURNAL_FILE, &journal::header())?;
                journal::header().to_vec()
            }
            Err(e) => return Err(damaged(e.to_string())),
        };
        let parsed = journal::parse(key, &label.set_id, number, &bytes).map_err(|e| damaged(e.to_string()))?;
        let mut records = Vec::new();
        let mut has_next = false;
        for entry in parsed.entries {
            match entry {
                Entry::Object(r) => records.push(r),
                Entry::NextDisk(_) => has_next = true,
            }
        }
        remove_leftovers(path, &seed, &objects, &records, number, job)?;
        let journal = JournalWriter::open(&journal_path, key, label.set_id, number, parsed.valid_len)?;
        Ok(SeedDisk { path: path.to_path_buf(), label, capacity: 0, used: 0, records, has_next, journal })
    }

    /// Labels an empty disk as disk `label.disk_number` of the set (count 0) and opens it.
    /// The label is written first: it is what makes the disk ours on a rerun.
    pub(crate) fn create(path: &Path, label: Label, key: &DiskKey, job: &str) -> Result<SeedDisk, SeedError> {
        let seed = path.join(SEED_DIR);
        fsio::ensure_dir(&seed)?;
        write_label(path, &label)?;
        fsio::atomic_write(&seed, JOURNAL_FILE, &journal::header())?;
        SeedDisk::open(path, label, key, job)
    }

    /// Sets the capacity (the given one, or the free space minus 1 % plus what this set
    /// already has there, at most `MAX_DISK_BYTES`) and counts the space used.
    pub(crate) fn account(&mut self, capacity: Option<u64>, manifest_reserve: u64) -> Result<(), SeedError> {
        self.used = base_space(manifest_reserve);
        for r in &self.records {
            self.used = self.used.saturating_add(space_for(&r.key, r.size));
        }
        self.capacity = match capacity {
            Some(c) => c.min(crate::MAX_DISK_BYTES),
            None => auto_capacity(&self.path, self.bytes_on_disk())?,
        };
        Ok(())
    }

    pub(crate) fn fits(&self, key: &str, size: u64) -> bool {
        self.used.saturating_add(space_for(key, size)) <= self.capacity
    }

    /// Records in the journal that disk `next` was started after this one.
    pub(crate) fn note_next(&mut self, next: u32) -> Result<(), SeedError> {
        self.journal.append(&Entry::NextDisk(next))?;
        self.has_next = true;
        Ok(())
    }

    /// Bytes of this set's files on the disk: label, journal, manifest, objects.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        let seed = self.path.join(SEED_DIR);
        let len = |name: &str| std::fs::metadata(seed.join(name)).map_or(0, |m| m.len());
        let objects: u64 = self.records.iter().map(|r| r.stored_size).sum();
        len(LABEL_FILE) + len(JOURNAL_FILE) + len(MANIFEST_FILE) + objects
    }

    /// Writes one staging object onto this disk and journals it once it has been read back
    /// from the disk and verified. `progress` gets the plaintext bytes of this object done.
    pub(crate) fn write_object(
        &mut self,
        source: &dyn Store,
        key: &DiskKey,
        obj: &SourceObject,
        file_ids: &mut HashSet<[u8; 8]>,
        buf: &mut Vec<u8>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), SeedError> {
        let (obj_key, size) = (obj.key.as_str(), obj.size);
        let mismatch = |reason: String| SeedError::SourceMismatch { key: obj_key.to_string(), reason };
        match source.head(obj_key)? {
            Some(n) if n == size => {}
            Some(n) => return Err(mismatch(format!("it is {n} bytes, not the {size} it was listed with: the staging location changed"))),
            None => return Err(mismatch("it is missing from the staging location".into())),
        }
        let set_id = self.label.set_id;
        let objects = self.path.join(SEED_DIR).join(OBJECTS_DIR);
        // A random id, never one this set uses (each id is the nonce prefix of its frames).
        let file_id = loop {
            let id: [u8; 8] = ferry_crypto::random_bytes();
            if !objects.join(object::file_name(&id)).exists() && file_ids.insert(id) {
                break id;
            }
        };
        let name = object::file_name(&file_id);
        let tmp = objects.join(format!("{name}{TMP_SUFFIX}"));
        let dest = objects.join(&name);
        let header = ObjectHeader { file_id, size };
        let aead = key.object_key(&set_id);
        let mut file = File::create(&tmp).map_err(|e| SeedError::io("create", &tmp, e))?;
        let wio = |e| SeedError::io("write", &tmp, e);
        let mut sealer = Sealer::start(&aead, &set_id, header, &mut file).map_err(wio)?;
        let mut hasher = blake3::Hasher::new();
        let mut at = 0;
        while at < size {
            let end = (at + PIECE).min(size);
            source.get_range_into(obj_key, at..end, buf)?;
            if buf.len() as u64 != end - at {
                return Err(mismatch(format!("the store returned {} bytes for range {at}..{end}", buf.len())));
            }
            hasher.update(buf);
            sealer.push(buf, &mut file).map_err(wio)?;
            at = end;
            progress(at);
        }
        sealer.finish(&mut file).map_err(wio)?;
        let hash = *hasher.finalize().as_bytes();
        if let Some(named) = crate::prepare::named_hash(obj_key) {
            if named != hash {
                drop(file);
                let _ = std::fs::remove_file(&tmp);
                return Err(mismatch(format!(
                    "its bytes hash to {}, not to its name: the staging location is damaged; run ferry check on it",
                    hex::encode(hash)
                )));
            }
        }
        // The object file MUST be durable under its final name before its journal record is
        // written: fsync the file, rename, fsync the folder.
        file.sync_all().map_err(|e| SeedError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| SeedError::io("rename", &tmp, e))?;
        fsio::fsync_dir(&objects)?;
        fsio::drop_cache(&file);
        drop(file);
        #[cfg(test)]
        crate::prepare::test_hooks::object_written()?;
        self.verify_written(&aead, &dest, header, &hash, obj_key)?;
        let record = ObjectRecord { key: obj_key.to_string(), size, hash, file: file_id, stored_size: object::stored_size(size) };
        self.journal.append(&Entry::Object(record.clone()))?;
        self.used = self.used.saturating_add(space_for(obj_key, size));
        self.records.push(record);
        #[cfg(test)]
        crate::prepare::test_hooks::object_journaled()?;
        Ok(())
    }

    /// Reads a just-written object file back from the disk (its pages dropped from the cache)
    /// and checks it decrypts to the expected size and hash.
    fn verify_written(
        &self,
        aead: &ferry_crypto::AeadKey,
        path: &Path,
        header: ObjectHeader,
        hash: &[u8; 32],
        obj_key: &str,
    ) -> Result<(), SeedError> {
        let failed = |reason: String| {
            let _ = std::fs::remove_file(path);
            SeedError::Corrupted {
                path: self.path.clone(),
                disk: self.label.disk_number,
                count: 0,
                job: self.label.job.clone(),
                key: obj_key.to_string(),
                file: object::file_name(&header.file_id),
                reason: format!("read back differently than written ({reason}): the disk may be failing; use another disk"),
            }
        };
        let mut f = File::open(path).map_err(|e| SeedError::io("open", path, e))?;
        let len = f.metadata().map_err(|e| SeedError::io("stat", path, e))?.len();
        if len != object::stored_size(header.size) {
            return Err(failed(format!("{len} bytes instead of {}", object::stored_size(header.size))));
        }
        let (_, back) = object::open_stream(aead, &self.label.set_id, Some(header), &mut f, None).map_err(|e| failed(e.to_string()))?;
        fsio::drop_cache(&f);
        if &back != hash {
            return Err(failed("another hash".into()));
        }
        Ok(())
    }

    /// Rewrites the label with the set's final disk count (atomically), unless it has it.
    pub(crate) fn set_count(&mut self, key: &DiskKey, count: u32) -> Result<(), SeedError> {
        if self.label.disk_count != count {
            let label = self.label.with_count(key, count);
            write_label(&self.path, &label)?;
            self.label = label;
        }
        Ok(())
    }
}

/// Free space minus 1 % plus `ours` (what the set already has there), at most `MAX_DISK_BYTES`.
fn auto_capacity(path: &Path, ours: u64) -> Result<u64, SeedError> {
    let st = rustix::fs::statvfs(path).map_err(|e| SeedError::io("measure free space of", path, e.into()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    Ok((free - free / 100).saturating_add(ours).min(crate::MAX_DISK_BYTES))
}

/// Deletes what a crash left behind: object files no journal record names (written but never
/// verified and journaled), temporary files. Checks every recorded file is there, whole.
fn remove_leftovers(path: &Path, seed: &Path, objects: &Path, records: &[ObjectRecord], number: u32, job: &str) -> Result<(), SeedError> {
    let mut present: HashMap<String, u64> = HashMap::new();
    let mut removed = false;
    let entries = std::fs::read_dir(objects).map_err(|e| SeedError::io("list", objects, e))?;
    let recorded: HashSet<String> = records.iter().map(|r| object::file_name(&r.file)).collect();
    for entry in entries {
        let entry = entry.map_err(|e| SeedError::io("list", objects, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let p = entry.path();
        let meta = entry.metadata().map_err(|e| SeedError::io("stat", &p, e))?;
        if recorded.contains(&name) && meta.is_file() {
            present.insert(name, meta.len());
            continue;
        }
        let gone = if meta.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        gone.map_err(|e| SeedError::io("remove leftover", &p, e))?;
        removed = true;
    }
    if removed {
        fsio::fsync_dir(objects)?;
    }
    for name in [LABEL_FILE, JOURNAL_FILE, MANIFEST_FILE] {
        let tmp = seed.join(format!("{name}{TMP_SUFFIX}"));
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| SeedError::io("remove leftover", &tmp, e))?;
        }
    }
    for r in records {
        let name = object::file_name(&r.file);
        let problem = match present.get(&name) {
            None => "its file is missing".to_string(),
            Some(&len) if len != r.stored_size => format!("its file has {len} bytes, not {}", r.stored_size),
            Some(_) => continue,
        };
        return Err(SeedError::Corrupted {
            path: path.to_path_buf(),
            disk: number,
            count: 0,
            job: job.to_string(),
            key: r.key.clone(),
            file: name,
            reason: format!(
                "recorded in the journal but {problem}: the disk was altered; remove its FERRY-SEED folder and prepare the set again"
            ),
        });
    }
    Ok(())
}
