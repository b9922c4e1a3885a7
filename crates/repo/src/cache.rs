//! The local cache: an on-disk index of the repository (blob -> pack location) and the files
//! cache (folder -> metadata and chunks of the last stored version of each of its files), in one
//! `redb` database per repository under the cache directory.
//!
//! The index never needs RAM proportional to the repository: lookups read B-tree pages through
//! redb's bounded page cache. The repository's index files stay the source of truth: the cache
//! records which of them it holds and is brought up to date (or rebuilt) when a repository is
//! opened, so a lost or stale cache costs time, never correctness.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use anyhow::{Context, Result};
use ferry_format::index::{IndexFile, IndexPack};
use ferry_format::pack::PackEntry;
use ferry_format::{BlobId, BlobKind, IndexId, PackId};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// kind(1) || blob id(32) -> pack id(32) || offset u32 || length u32 || raw_len u32 || compressed u8
const BLOBS: TableDefinition<[u8; 33], [u8; LOC_LEN]> = TableDefinition::new("blobs");
/// pack id -> salt(16) || size u64
const PACKS: TableDefinition<[u8; 32], [u8; 24]> = TableDefinition::new("packs");
/// index files whose content is in BLOBS/PACKS
const INDEX_FILES: TableDefinition<[u8; 32], ()> = TableDefinition::new("index_files");
/// packs the vault deleted (`deleted-packs/` records): never indexed again
const DELETED_PACKS: TableDefinition<[u8; 32], ()> = TableDefinition::new("deleted_packs");
/// the `deleted-packs/` records whose packs are in DELETED_PACKS (object key)
const DELETED_RECORDS: TableDefinition<&str, ()> = TableDefinition::new("deleted_records");
/// folder path bytes || 0x00 || part u32 BE -> postcard(Vec<(name, FileEntry)>), names ascending
const FOLDERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("folder_files");
/// The files cache of earlier versions (one row per file): dropped when the cache is opened.
const OLD_FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files");

/// Files per part of a folder's files cache record: a huge folder is stored in parts of at
/// most this many files, so no single value grows without bound.
const FOLDER_PART_FILES: usize = 4096;

/// Where a blob is stored: its pack and its entry in that pack's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub entry: PackEntry,
}

impl BlobLocation {
    /// The location of a pack header entry in pack `pack`.
    pub fn of(pack: PackId, e: &PackEntry) -> Self {
        BlobLocation { pack, entry: *e }
    }
}

/// The files cache record of one folder: its regular files, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderFiles {
    /// Absolute path bytes of the folder.
    pub folder: Vec<u8>,
    /// Name and entry of each file, in any order (stored sorted by name).
    pub files: Vec<(Vec<u8>, FileEntry)>,
    /// Replace the folder's record (the folder was listed in full) or merge into it (only some
    /// of its files were backed up, e.g. files named on the command line).
    pub replace: bool,
}

/// What the files cache remembers of a stored file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub content: Vec<BlobId>,
}

fn blob_key(kind: BlobKind, id: &BlobId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = kind.as_byte();
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Bytes of a blob location in the cache: pack ID, offset, length, raw length, compressed,
/// unit start, unit length.
const LOC_LEN: usize = 53;

fn encode_loc(pack: &PackId, e: &PackEntry) -> [u8; LOC_LEN] {
    let mut v = [0u8; LOC_LEN];
    v[..32].copy_from_slice(pack.as_bytes());
    v[32..36].copy_from_slice(&e.offset.to_le_bytes());
    v[36..40].copy_from_slice(&e.length.to_le_bytes());
    v[40..44].copy_from_slice(&e.raw_len.to_le_bytes());
    v[44] = u8::from(e.compressed);
    v[45..49].copy_from_slice(&e.unit_start.to_le_bytes());
    v[49..53].copy_from_slice(&e.unit_len.to_le_bytes());
    v
}

fn decode_loc(kind: BlobKind, id: BlobId, v: &[u8; LOC_LEN]) -> BlobLocation {
    let u32at = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    let mut pack = [0u8; 32];
    pack.copy_from_slice(&v[..32]);
    let entry = PackEntry {
        kind,
        id,
        offset: u32at(32),
        length: u32at(36),
        raw_len: u32at(40),
        compressed: v[44] != 0,
        unit_start: u32at(45),
        unit_len: u32at(49),
    };
    BlobLocation { pack: PackId::from_bytes(pack), entry }
}

/// Empties the index tables (not the files cache, nor the record of deleted packs).
fn drop_index_tables(w: &redb::WriteTransaction) -> Result<()> {
    w.delete_table(BLOBS)?;
    w.delete_table(PACKS)?;
    w.delete_table(INDEX_FILES)?;
    w.open_table(BLOBS)?;
    w.open_table(PACKS)?;
    w.open_table(INDEX_FILES)?;
    Ok(())
}

type BlobTable = redb::ReadOnlyTable<[u8; 33], [u8; LOC_LEN]>;

/// The local cache database of one repository.
pub struct LocalCache {
    db: Database,
    /// Bumped by every commit.
    generation: AtomicU64,
    /// The blob table of a read transaction, and the generation it was opened at: a backup looks
    /// up every chunk it reads, and opening a read transaction for each costs more than the
    /// lookup (measured: 3 % of a first backup's CPU time).
    snapshot: RwLock<Option<(u64, BlobTable)>>,
}

impl std::fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCache")
    }
}

impl LocalCache {
    /// Opens (or creates) the cache database at `path`; `page_cache` bounds its memory.
    pub fn open(path: &Path, page_cache: usize) -> crate::Result<Self> {
        if let Some(dir) = path.parent() {
            // Owner-only: the cache names the backed-up files and their sizes.
            ferry_store::private_dir(dir).with_context(|| format!("create cache folder {}", dir.display()))?;
        }
        let db = Database::builder()
            .set_cache_size(page_cache)
            .create(path)
            .with_context(|| format!("open cache database {}", path.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("make the cache database {} private", path.display()))?;
        }
        let c = LocalCache { db, generation: AtomicU64::new(0), snapshot: RwLock::new(None) };
        c.write(Durability::Immediate, |w| {
            w.open_table(BLOBS)?;
            w.open_table(PACKS)?;
            w.open_table(INDEX_FILES)?;
            w.delete_table(OLD_FILES)?;
            w.open_table(FOLDERS)?;
            w.open_table(DELETED_PACKS)?;
            w.open_table(DELETED_RECORDS)?;
            Ok(())
        })?;
        Ok(c)
    }

    fn write(&self, durability: Durability, f: impl FnOnce(&redb::WriteTransaction) -> Result<()>) -> crate::Result<()> {
        // The lookup snapshot would keep the pages this commit frees from being reused.
        self.snapshot.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let mut w = self.db.begin_write().context("begin cache transaction")?;
        w.set_durability(durability);
        f(&w)?;
        w.commit().context("commit cache transaction")?;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Where a blob is, if the index knows it.
    pub fn lookup(&self, kind: BlobKind, id: &BlobId) -> crate::Result<Option<BlobLocation>> {
        let key = blob_key(kind, id);
        let generation = self.generation.load(Ordering::Acquire);
        {
            let snap = self.snapshot.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, t)) = snap.as_ref().filter(|(g, _)| *g == generation) {
                return Ok(t.get(key)?.map(|v| decode_loc(kind, *id, &v.value())));
            }
        }
        // Out of date (or none yet): a new read transaction sees every commit so far.
        let t = self.db.begin_read()?.open_table(BLOBS)?;
        let found = t.get(key)?.map(|v| decode_loc(kind, *id, &v.value()));
        *self.snapshot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((generation, t));
        Ok(found)
    }

    pub fn contains(&self, kind: BlobKind, id: &BlobId) -> crate::Result<bool> {
        Ok(self.lookup(kind, id)?.is_some())
    }

    /// A pack's salt and size.
    pub fn pack_info(&self, pack: &PackId) -> crate::Result<Option<([u8; 16], u64)>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PACKS)?;
        Ok(t.get(pack.as_bytes())?.map(|v| {
            let v = v.value();
            let mut salt = [0u8; 16];
            salt.copy_from_slice(&v[..16]);
            let mut size = [0u8; 8];
            size.copy_from_slice(&v[16..]);
            (salt, u64::from_le_bytes(size))
        }))
    }

    /// Records packs (and their blobs), except packs the vault deleted. `index_file` marks the
    /// index file they came from. `durable` forces the commit to disk; otherwise it survives
    /// only a clean exit (the repository index files are the truth, so losing it costs a
    /// resync, never data).
    pub fn add_packs(&self, packs: &[IndexPack], index_file: Option<&IndexId>, durable: bool) -> crate::Result<()> {
        let d = if durable { Durability::Immediate } else { Durability::None };
        self.write(d, |w| {
            let mut blobs = w.open_table(BLOBS)?;
            let mut pt = w.open_table(PACKS)?;
            let deleted = w.open_table(DELETED_PACKS)?;
            let mut rows = Vec::with_capacity(packs.iter().map(|p| p.blobs.len()).sum());
            for p in packs {
                if deleted.get(p.id.as_bytes())?.is_some() {
                    continue;
                }
                let mut info = [0u8; 24];
                info[..16].copy_from_slice(&p.salt);
                info[16..].copy_from_slice(&p.size.to_le_bytes());
                pt.insert(p.id.as_bytes(), info)?;
                rows.extend(p.blobs.iter().map(|e| (blob_key(e.kind, &e.id), encode_loc(&p.id, e))));
            }
            // In key order, the inserts walk the tree once from left to right instead of
            // jumping to a random leaf each (blob IDs are random). Kernel-tree backup, two
            // runs each: the uploader thread's CPU time 725-747 ms -> 620-721 ms.
            rows.sort_unstable_by_key(|r| r.0);
            for (key, loc) in rows {
                blobs.insert(key, loc)?;
            }
            if let Some(id) = index_file {
                w.open_table(INDEX_FILES)?.insert(id.as_bytes(), ())?;
            }
            Ok(())
        })
    }

    /// Records a whole index file read from the repository. Durable: redb frees pages only at
    /// durable commits, and a rebuild with non-durable ones grew the file quadratically
    /// (measured: 10 GiB at 5 million entries; see BENCHMARKS.md).
    pub fn add_index_file(&self, id: &IndexId, f: &IndexFile) -> crate::Result<()> {
        self.add_packs(&f.packs, Some(id), true)
    }

    /// Marks an index file as incorporated (its packs were added during this session).
    pub fn mark_index_file(&self, id: &IndexId, durable: bool) -> crate::Result<()> {
        let d = if durable { Durability::Immediate } else { Durability::None };
        self.write(d, |w| {
            w.open_table(INDEX_FILES)?.insert(id.as_bytes(), ())?;
            Ok(())
        })
    }

    /// The index files this cache holds.
    pub fn index_files(&self) -> crate::Result<Vec<IndexId>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(INDEX_FILES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            out.push(IndexId::from_bytes(item?.0.value()));
        }
        Ok(out)
    }

    /// Number of blobs indexed.
    pub fn blob_count(&self) -> crate::Result<u64> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(BLOBS)?.len()?)
    }

    /// Drops the index (not the files cache), before a rebuild.
    pub fn clear_index(&self) -> crate::Result<()> {
        self.write(Durability::Immediate, drop_index_tables)
    }

    /// Whether the vault deleted this pack.
    pub fn is_pack_deleted(&self, pack: &PackId) -> crate::Result<bool> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(DELETED_PACKS)?.get(pack.as_bytes())?.is_some())
    }

    /// The `deleted-packs/` records already applied.
    pub fn deleted_records(&self) -> crate::Result<std::collections::HashSet<String>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DELETED_RECORDS)?;
        let mut out = std::collections::HashSet::new();
        for item in t.iter()? {
            out.insert(item?.0.value().to_string());
        }
        Ok(out)
    }

    /// Applies `deleted-packs/` records: their packs are never indexed again. If one of them
    /// is indexed now, the index is dropped in the same transaction (the caller rebuilds it
    /// from the index files, without the deleted packs); returns whether it was.
    pub fn apply_deleted_packs(&self, records: &[(String, Vec<PackId>)]) -> crate::Result<bool> {
        let mut cleared = false;
        self.write(Durability::Immediate, |w| {
            let mut rt = w.open_table(DELETED_RECORDS)?;
            let mut dt = w.open_table(DELETED_PACKS)?;
            let mut indexed = false;
            {
                let pt = w.open_table(PACKS)?;
                for (key, packs) in records {
                    rt.insert(key.as_str(), ())?;
                    for p in packs {
                        dt.insert(p.as_bytes(), ())?;
                        indexed |= pt.get(p.as_bytes())?.is_some();
                    }
                }
            }
            if indexed {
                drop_index_tables(w)?;
                cleared = true;
            }
            Ok(())
        })?;
        Ok(cleared)
    }

    /// Makes everything written so far durable.
    pub fn persist(&self) -> crate::Result<()> {
        self.write(Durability::Immediate, |_| Ok(()))
    }

    /// The files cache record of a folder (absolute path bytes): its files' names and entries,
    /// sorted by name. A damaged part reads as missing (a cache miss, never an error).
    pub fn folder_files(&self, folder: &[u8]) -> crate::Result<Vec<(Vec<u8>, FileEntry)>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(FOLDERS)?;
        Ok(read_folder(&t, folder)?)
    }

    /// Whether the files cache holds no entry at all (a new or lost cache).
    pub fn files_is_empty(&self) -> crate::Result<bool> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(FOLDERS)?.is_empty()?)
    }

    /// Stores folders' files cache records (after the chunks they name are indexed in the
    /// repository), in one durable commit. One row per part of a folder, not per file: a
    /// kernel-tree backup writes 5,000 rows instead of 78,000.
    pub fn put_folders(&self, records: &[FolderFiles]) -> crate::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // In key order (see add_packs); a stable sort, so that of two records for one folder
        // the later one still wins.
        let mut sorted: Vec<&FolderFiles> = records.iter().collect();
        sorted.sort_by(|a, b| a.folder.cmp(&b.folder));
        self.write(Durability::Immediate, |w| {
            let mut t = w.open_table(FOLDERS)?;
            for r in sorted {
                let mut files: Vec<(&[u8], &FileEntry)> = Vec::with_capacity(r.files.len());
                let old = if r.replace { Vec::new() } else { read_folder(&t, &r.folder)? };
                files.extend(old.iter().map(|(n, e)| (n.as_slice(), e)));
                files.extend(r.files.iter().map(|(n, e)| (n.as_slice(), e)));
                // Stable: a name in both keeps its new entry (it comes later, and dedup_by keeps
                // the first of a run, so reverse first).
                files.reverse();
                files.sort_by(|a, b| a.0.cmp(b.0));
                files.dedup_by(|a, b| a.0 == b.0);
                let mut part = 0u32;
                for group in files.chunks(FOLDER_PART_FILES) {
                    let v = postcard::to_allocvec(group).context("encode files cache record")?;
                    t.insert(folder_key(&r.folder, part).as_slice(), v.as_slice())?;
                    part += 1;
                }
                // Parts left from a larger earlier record.
                loop {
                    let key = folder_key(&r.folder, part);
                    if t.remove(key.as_slice())?.is_none() {
                        break;
                    }
                    part += 1;
                }
            }
            Ok(())
        })
    }
}

/// The key of part `part` of a folder's record. Paths hold no NUL byte, so a folder's parts sort
/// together, in part order, and apart from every other folder's.
fn folder_key(folder: &[u8], part: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(folder.len() + 5);
    k.extend_from_slice(folder);
    k.push(0);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

fn read_folder(t: &impl ReadableTable<&'static [u8], &'static [u8]>, folder: &[u8]) -> Result<Vec<(Vec<u8>, FileEntry)>> {
    let mut out = Vec::new();
    for part in 0u32.. {
        let Some(v) = t.get(folder_key(folder, part).as_slice())? else {
            break;
        };
        match postcard::from_bytes::<Vec<(Vec<u8>, FileEntry)>>(v.value()) {
            Ok(files) => out.extend(files),
            // A damaged part: its files are read again.
            Err(_) => continue,
        }
    }
    // Sorted already when written; a damaged part skipped leaves the rest in order too.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u8, offset: u32) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id: BlobId::from_bytes([id; 32]),
            offset,
            length: 40,
            raw_len: 10,
            compressed: true,
            unit_start: 0,
            unit_len: 10,
        }
    }

    #[test]
    fn add_lookup_clear() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalCache::open(&dir.path().join("c.redb"), 1 << 20).unwrap();
        let p = IndexPack { id: PackId::from_bytes([9; 32]), salt: [1; 16], size: 1000, blobs: vec![entry(1, 24), entry(2, 64)] };
        c.add_packs(std::slice::from_ref(&p), Some(&IndexId::from_bytes([5; 32])), true).unwrap();
        let l = c.lookup(BlobKind::Data, &BlobId::from_bytes([2; 32])).unwrap().unwrap();
        assert_eq!((l.pack, l.entry.offset, l.entry.length, l.entry.raw_len, l.entry.compressed), (p.id, 64, 40, 10, true));
        assert!(c.lookup(BlobKind::Tree, &BlobId::from_bytes([2; 32])).unwrap().is_none());
        assert_eq!(c.pack_info(&p.id).unwrap(), Some(([1; 16], 1000)));
        assert_eq!(c.index_files().unwrap(), vec![IndexId::from_bytes([5; 32])]);
        assert_eq!(c.blob_count().unwrap(), 2);
        c.clear_index().unwrap();
        assert_eq!(c.blob_count().unwrap(), 0);
        assert!(c.index_files().unwrap().is_empty());
    }

    #[test]
    fn deleted_packs_leave_the_index_and_never_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalCache::open(&dir.path().join("c.redb"), 1 << 20).unwrap();
        let gone = IndexPack { id: PackId::from_bytes([9; 32]), salt: [1; 16], size: 1000, blobs: vec![entry(1, 24)] };
        let kept = IndexPack { id: PackId::from_bytes([8; 32]), salt: [1; 16], size: 1000, blobs: vec![entry(2, 24)] };
        c.add_packs(&[gone.clone(), kept.clone()], Some(&IndexId::from_bytes([5; 32])), true).unwrap();
        // A record naming a pack not indexed here changes nothing in the index.
        assert!(!c.apply_deleted_packs(&[("deleted-packs/a".into(), vec![PackId::from_bytes([7; 32])])]).unwrap());
        assert_eq!(c.blob_count().unwrap(), 2);
        // One naming an indexed pack drops the index (the caller rebuilds it from the index files).
        assert!(c.apply_deleted_packs(&[("deleted-packs/b".into(), vec![gone.id])]).unwrap());
        assert_eq!(c.blob_count().unwrap(), 0);
        assert!(c.index_files().unwrap().is_empty());
        c.add_packs(&[gone.clone(), kept], None, true).unwrap();
        assert!(c.lookup(BlobKind::Data, &BlobId::from_bytes([1; 32])).unwrap().is_none(), "a deleted pack is never indexed again");
        assert!(c.lookup(BlobKind::Data, &BlobId::from_bytes([2; 32])).unwrap().is_some());
        assert!(c.is_pack_deleted(&gone.id).unwrap());
        let records = c.deleted_records().unwrap();
        assert!(records.contains("deleted-packs/a") && records.contains("deleted-packs/b"));
    }

    fn file(n: u64) -> FileEntry {
        FileEntry { size: n, mtime_ns: 2, ctime_ns: 3, inode: n, content: vec![BlobId::from_bytes([n as u8; 32])] }
    }

    fn named(names: impl IntoIterator<Item = u64>) -> Vec<(Vec<u8>, FileEntry)> {
        names.into_iter().map(|n| (format!("f{n:06}").into_bytes(), file(n))).collect()
    }

    #[test]
    fn files_cache_records_replace_merge_and_span_parts() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalCache::open(&dir.path().join("c.redb"), 1 << 20).unwrap();
        assert!(c.files_is_empty().unwrap());
        // A folder larger than a part, and one whose name prefixes the other's.
        let big = named(0..(2 * FOLDER_PART_FILES as u64 + 10));
        let mut shuffled = big.clone();
        shuffled.reverse();
        c.put_folders(&[
            FolderFiles { folder: b"/a".to_vec(), files: shuffled, replace: true },
            FolderFiles { folder: b"/a/b".to_vec(), files: named([1]), replace: true },
        ])
        .unwrap();
        assert!(!c.files_is_empty().unwrap());
        assert_eq!(c.folder_files(b"/a").unwrap(), big, "read back whole and sorted");
        assert_eq!(c.folder_files(b"/a/b").unwrap(), named([1]));
        assert!(c.folder_files(b"/").unwrap().is_empty());
        // Replacing with a smaller record drops the parts it no longer fills.
        c.put_folders(&[FolderFiles { folder: b"/a".to_vec(), files: named([5, 3]), replace: true }]).unwrap();
        assert_eq!(c.folder_files(b"/a").unwrap(), named([3, 5]));
        // Merging keeps the other files and takes the new entry of a file in both.
        let mut newer = named([5, 7]);
        newer[0].1.size = 99;
        c.put_folders(&[FolderFiles { folder: b"/a".to_vec(), files: newer.clone(), replace: false }]).unwrap();
        assert_eq!(c.folder_files(b"/a").unwrap(), [named([3]), newer].concat());
        assert_eq!(c.folder_files(b"/a/b").unwrap(), named([1]), "another folder is untouched");
    }

    #[test]
    fn a_damaged_files_cache_part_reads_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalCache::open(&dir.path().join("c.redb"), 1 << 20).unwrap();
        c.put_folders(&[FolderFiles { folder: b"/a".to_vec(), files: named(0..=(FOLDER_PART_FILES as u64)), replace: true }]).unwrap();
        c.write(Durability::Immediate, |w| {
            w.open_table(FOLDERS)?.insert(folder_key(b"/a", 0).as_slice(), [0xffu8; 3].as_slice())?;
            Ok(())
        })
        .unwrap();
        assert_eq!(c.folder_files(b"/a").unwrap(), named([FOLDER_PART_FILES as u64]));
    }
}
