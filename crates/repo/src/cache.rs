//! The local cache: an on-disk index of the repository (blob -> pack location) and the files
//! cache (path -> metadata and chunks of the last stored version), in one `redb` database per
//! repository under the cache directory.
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
/// absolute path bytes -> postcard(FileEntry)
const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files");

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub kind: BlobKind,
    pub id: BlobId,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    pub compressed: bool,
    pub unit_start: u32,
    pub unit_len: u32,
}

impl BlobLocation {
    /// The location of a pack header entry in pack `pack`.
    pub fn of(pack: PackId, e: &PackEntry) -> Self {
        let PackEntry { kind, id, offset, length, raw_len, compressed, unit_start, unit_len } = *e;
        BlobLocation { pack, kind, id, offset, length, raw_len, compressed, unit_start, unit_len }
    }

    /// The pack header entry this location was made from.
    pub fn entry(&self) -> PackEntry {
        let BlobLocation { kind, id, offset, length, raw_len, compressed, unit_start, unit_len, .. } = *self;
        PackEntry { kind, id, offset, length, raw_len, compressed, unit_start, unit_len }
    }

    /// See [`PackEntry::unit_aad_id`].
    pub fn unit_aad_id(&self) -> BlobId {
        self.entry().unit_aad_id()
    }
}

/// What the files cache remembers of a stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    v[44] = e.compressed as u8;
    v[45..49].copy_from_slice(&e.unit_start.to_le_bytes());
    v[49..53].copy_from_slice(&e.unit_len.to_le_bytes());
    v
}

fn decode_loc(kind: BlobKind, id: BlobId, v: &[u8; LOC_LEN]) -> BlobLocation {
    let u32at = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    let mut pack = [0u8; 32];
    pack.copy_from_slice(&v[..32]);
    BlobLocation {
        pack: PackId::from_bytes(pack),
        kind,
        id,
        offset: u32at(32),
        length: u32at(36),
        raw_len: u32at(40),
        compressed: v[44] != 0,
        unit_start: u32at(45),
        unit_len: u32at(49),
    }
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
    pub fn open(path: &Path, page_cache: usize) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create cache folder {}", dir.display()))?;
        }
        let db = Database::builder()
            .set_cache_size(page_cache)
            .create(path)
            .with_context(|| format!("open cache database {}", path.display()))?;
        let c = LocalCache { db, generation: AtomicU64::new(0), snapshot: RwLock::new(None) };
        c.write(Durability::Immediate, |w| {
            w.open_table(BLOBS)?;
            w.open_table(PACKS)?;
            w.open_table(INDEX_FILES)?;
            w.open_table(FILES)?;
            w.open_table(DELETED_PACKS)?;
            w.open_table(DELETED_RECORDS)?;
            Ok(())
        })?;
        Ok(c)
    }

    fn write(&self, durability: Durability, f: impl FnOnce(&redb::WriteTransaction) -> Result<()>) -> Result<()> {
        // The lookup snapshot would keep the pages this commit frees from being reused.
        self.snapshot.write().unwrap_or_else(|e| e.into_inner()).take();
        let mut w = self.db.begin_write().context("begin cache transaction")?;
        w.set_durability(durability);
        f(&w)?;
        w.commit().context("commit cache transaction")?;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Where a blob is, if the index knows it.
    pub fn lookup(&self, kind: BlobKind, id: &BlobId) -> Result<Option<BlobLocation>> {
        let key = blob_key(kind, id);
        let generation = self.generation.load(Ordering::Acquire);
        {
            let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, t)) = snap.as_ref().filter(|(g, _)| *g == generation) {
                return Ok(t.get(key)?.map(|v| decode_loc(kind, *id, &v.value())));
            }
        }
        // Out of date (or none yet): a new read transaction sees every commit so far.
        let t = self.db.begin_read()?.open_table(BLOBS)?;
        let found = t.get(key)?.map(|v| decode_loc(kind, *id, &v.value()));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Some((generation, t));
        Ok(found)
    }

    pub fn contains(&self, kind: BlobKind, id: &BlobId) -> Result<bool> {
        Ok(self.lookup(kind, id)?.is_some())
    }

    /// A pack's salt and size.
    pub fn pack_info(&self, pack: &PackId) -> Result<Option<([u8; 16], u64)>> {
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
    pub fn add_packs(&self, packs: &[IndexPack], index_file: Option<&IndexId>, durable: bool) -> Result<()> {
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
    pub fn add_index_file(&self, id: &IndexId, f: &IndexFile) -> Result<()> {
        self.add_packs(&f.packs, Some(id), true)
    }

    /// Marks an index file as incorporated (its packs were added during this session).
    pub fn mark_index_file(&self, id: &IndexId, durable: bool) -> Result<()> {
        let d = if durable { Durability::Immediate } else { Durability::None };
        self.write(d, |w| {
            w.open_table(INDEX_FILES)?.insert(id.as_bytes(), ())?;
            Ok(())
        })
    }

    /// The index files this cache holds.
    pub fn index_files(&self) -> Result<Vec<IndexId>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(INDEX_FILES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            out.push(IndexId::from_bytes(item?.0.value()));
        }
        Ok(out)
    }

    /// Number of blobs indexed.
    pub fn blob_count(&self) -> Result<u64> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(BLOBS)?.len()?)
    }

    /// Drops the index (not the files cache), before a rebuild.
    pub fn clear_index(&self) -> Result<()> {
        self.write(Durability::Immediate, drop_index_tables)
    }

    /// Whether the vault deleted this pack.
    pub fn is_pack_deleted(&self, pack: &PackId) -> Result<bool> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(DELETED_PACKS)?.get(pack.as_bytes())?.is_some())
    }

    /// The `deleted-packs/` records already applied.
    pub fn deleted_records(&self) -> Result<std::collections::HashSet<String>> {
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
    pub fn apply_deleted_packs(&self, records: &[(String, Vec<PackId>)]) -> Result<bool> {
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
    pub fn persist(&self) -> Result<()> {
        self.write(Durability::Immediate, |_| Ok(()))
    }

    /// The files cache entry of an absolute path.
    pub fn file(&self, path: &[u8]) -> Result<Option<FileEntry>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(FILES)?;
        let Some(v) = t.get(path)? else {
            return Ok(None);
        };
        // A damaged entry is a cache miss, not an error.
        Ok(postcard::from_bytes(v.value()).ok())
    }

    /// Whether the files cache holds no entry at all (a new or lost cache).
    pub fn files_is_empty(&self) -> Result<bool> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(FILES)?.is_empty()?)
    }

    /// Stores files cache entries (after the chunks they name are indexed in the repository).
    pub fn put_files(&self, entries: &[(Vec<u8>, FileEntry)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // In key order (see add_packs); a stable sort, so that of two entries for one path the
        // later one still wins.
        let mut sorted: Vec<&(Vec<u8>, FileEntry)> = entries.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        self.write(Durability::Immediate, |w| {
            let mut t = w.open_table(FILES)?;
            for (path, e) in sorted {
                let v = postcard::to_allocvec(e).context("encode files cache entry")?;
                t.insert(path.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }
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
        assert_eq!((l.pack, l.offset, l.length, l.raw_len, l.compressed), (p.id, 64, 40, 10, true));
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

    #[test]
    fn files_cache() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalCache::open(&dir.path().join("c.redb"), 1 << 20).unwrap();
        let e = FileEntry { size: 1, mtime_ns: 2, ctime_ns: 3, inode: 4, content: vec![BlobId::from_bytes([1; 32])] };
        c.put_files(&[(b"/a".to_vec(), e.clone())]).unwrap();
        assert_eq!(c.file(b"/a").unwrap(), Some(e));
        assert_eq!(c.file(b"/b").unwrap(), None);
    }
}
