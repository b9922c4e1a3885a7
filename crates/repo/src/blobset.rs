//! A set of blob IDs kept on disk, for prune at the scale of tens of millions of blobs (an
//! in-memory set of 80 million IDs would take several GB).
//!
//! A temporary `redb` database in the repository's cache folder, removed when the set is
//! dropped. Inserts are batched; lookups see every insert made before the last [`BlobSet::flush`]
//! (inserting flushes by itself every [`BATCH`] entries).

use std::path::Path;

use anyhow::Context;
use ferry_format::{BlobId, BlobKind};
use redb::{Database, Durability, ReadableTableMetadata, TableDefinition};

const SET: TableDefinition<[u8; 33], ()> = TableDefinition::new("set");
/// Entries per write transaction.
const BATCH: usize = 100_000;
/// Page cache of the database: bounds the set's memory.
const PAGE_CACHE: usize = 32 << 20;

pub struct BlobSet {
    db: Database,
    pending: Vec<[u8; 33]>,
    /// A read snapshot for lookups, taken at the last flush.
    snapshot: Option<redb::ReadOnlyTable<[u8; 33], ()>>,
    // Dropped last: the folder holding the database file.
    _dir: tempfile::TempDir,
}

fn key(kind: BlobKind, id: &BlobId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = kind.as_byte();
    k[1..].copy_from_slice(id.as_bytes());
    k
}

impl BlobSet {
    /// An empty set in a new temporary folder under `dir`.
    pub fn new_in(dir: &Path) -> crate::Result<BlobSet> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("blobset-")
            .tempdir_in(dir)
            .with_context(|| format!("create a scratch folder in {}", dir.display()))?;
        let db = Database::builder().set_cache_size(PAGE_CACHE).create(tmp.path().join("set.redb")).context("create a scratch database")?;
        let mut set = BlobSet { db, pending: Vec::new(), snapshot: None, _dir: tmp };
        set.flush()?;
        Ok(set)
    }

    pub fn insert(&mut self, kind: BlobKind, id: &BlobId) -> crate::Result<()> {
        self.pending.push(key(kind, id));
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every insert so far visible to [`BlobSet::contains`].
    pub fn flush(&mut self) -> crate::Result<()> {
        // The snapshot would keep the pages this commit frees from being reused.
        self.snapshot = None;
        let mut w = self.db.begin_write()?;
        // Durable: redb reuses freed pages only after durable commits.
        w.set_durability(Durability::Immediate);
        {
            let mut t = w.open_table(SET)?;
            self.pending.sort_unstable();
            for k in self.pending.drain(..) {
                t.insert(k, ())?;
            }
        }
        w.commit()?;
        self.snapshot = Some(self.db.begin_read()?.open_table(SET)?);
        Ok(())
    }

    /// Whether the set holds the blob (as of the last flush).
    pub fn contains(&self, kind: BlobKind, id: &BlobId) -> crate::Result<bool> {
        debug_assert!(self.pending.is_empty(), "flush before lookups");
        let t = self.snapshot.as_ref().expect("taken at every flush");
        Ok(t.get(key(kind, id))?.is_some())
    }

    /// Entries (as of the last flush).
    pub fn len(&self) -> crate::Result<u64> {
        let t = self.snapshot.as_ref().expect("taken at every flush");
        Ok(t.len()?)
    }

    /// No entries (as of the last flush).
    pub fn is_empty(&self) -> crate::Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_inserted_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = BlobSet::new_in(dir.path()).unwrap();
        let id = |n: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&n.to_le_bytes());
            BlobId::from_bytes(b)
        };
        for n in 0..(BATCH as u32 + 10) {
            s.insert(BlobKind::Data, &id(n)).unwrap();
        }
        s.insert(BlobKind::Data, &id(3)).unwrap();
        s.flush().unwrap();
        assert_eq!(s.len().unwrap(), BATCH as u64 + 10);
        assert!(s.contains(BlobKind::Data, &id(7)).unwrap());
        assert!(s.contains(BlobKind::Data, &id(BATCH as u32 + 9)).unwrap());
        assert!(!s.contains(BlobKind::Tree, &id(7)).unwrap(), "kinds are apart");
        assert!(!s.contains(BlobKind::Data, &id(BATCH as u32 + 10)).unwrap());
        let folder = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        drop(s);
        assert!(!folder.exists(), "the scratch folder goes with the set");
    }
}
