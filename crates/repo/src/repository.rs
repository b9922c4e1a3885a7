//! Opening, creating and reading a repository.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use ferry_crypto::keyfile::{KdfParams, KeyFile};
use ferry_crypto::{CryptoError, IdKey, MasterKey};
use ferry_format::chunker::Chunker;
use ferry_format::config::Config;
use ferry_format::index::IndexFile;
use ferry_format::packlist::{DeletedPacks, PackList};
use ferry_format::recovery_point::RecoveryPoint;
use ferry_format::tree::{NodeKind, Tree};
use ferry_format::{blob, BlobId, BlobKind, IndexId, KeyId, PackId, RecoveryPointId};
use ferry_store::Store;

use crate::cache::{BlobLocation, LocalCache};
use crate::error::bail;
use crate::RepoError;

/// A recovery point and its ID.
pub type Point = (RecoveryPointId, RecoveryPoint);
/// A recovery point that could not be read, and why.
pub type DamagedPoint = (RecoveryPointId, String);

/// Memory the cache database may use for its page cache.
const CACHE_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// An open repository: its store, config, master key and synchronized local index.
pub struct Repository {
    store: Arc<dyn Store>,
    config: Config,
    master: MasterKey,
    id_key: IdKey,
    chunker: Chunker,
    cache: LocalCache,
    key_id: KeyId,
    /// This repository's folder in the cache directory (scratch space for prune and check).
    cache_dir: PathBuf,
    // Keeps a temporary cache folder alive when the shared one is in use by another process.
    _temp_cache: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository").field("store", &self.store.describe()).field("id", &self.config.id).finish()
    }
}

/// Creation options for `init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub compression_level: Option<i32>,
    /// Level of bundles of small files; by default the lower of `compression_level` and 1.
    pub bundle_compression_level: Option<i32>,
    pub pack_size: Option<u32>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn host_name() -> String {
    hostname::get().map_or_else(|_| "unknown".into(), |h| h.to_string_lossy().into_owned())
}

pub(crate) fn user_name() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}

fn read_config(store: &dyn Store) -> Result<Option<Config>> {
    match store.get("config") {
        Ok(b) => Ok(Some(Config::from_json(&b).with_context(|| format!("read the repository config of {}", store.describe()))?)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read the repository config of {}", store.describe())),
    }
}

fn is_transient(e: &crate::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<ferry_store::StoreError>().is_some_and(ferry_store::StoreError::is_transient))
}

fn put_key_file(store: &dyn Store, kf: &KeyFile) -> Result<KeyId> {
    let bytes = kf.to_json();
    let id = KeyId::from_bytes(ferry_crypto::content_hash(&bytes));
    store.put_if_absent(&id.object_key(), Bytes::from(bytes)).context("store key file")?;
    Ok(id)
}

/// The local cache's file in the cache folder, and the files of earlier cache layouts.
const CACHE_FILE: &str = "cache-v2.redb";
const OLD_CACHE_FILES: &[&str] = &["index.redb"];

/// Takes blobs out of stored units read from packs, decoding each unit once however many of
/// its blobs (a bundle's) are asked for one after another.
pub struct UnitDecoder<'r> {
    repo: &'r Repository,
    /// The last unit decoded: its pack and offset; its plaintext is in `plain`.
    last: Option<(PackId, u32)>,
    plain: Vec<u8>,
    /// The decrypted, still compressed payload (kept, like `plain`, for the next unit).
    scratch: Vec<u8>,
}

impl<'r> UnitDecoder<'r> {
    pub fn new(repo: &'r Repository) -> Self {
        UnitDecoder { repo, last: None, plain: Vec::new(), scratch: Vec::new() }
    }

    /// The plaintext of the blob at `loc`, checked against its ID; `stored` is the bytes of
    /// its unit (`loc.entry.offset .. loc.entry.offset + loc.entry.length` of the pack).
    pub fn blob(&mut self, loc: &BlobLocation, salt: &[u8; 16], stored: &[u8]) -> crate::Result<&[u8]> {
        if self.last != Some((loc.pack, loc.entry.offset)) {
            self.last = None;
            self.repo.open_unit_into(loc, salt, stored, &mut self.scratch, &mut self.plain)?;
            self.last = Some((loc.pack, loc.entry.offset));
        }
        self.repo.unit_member(loc, &self.plain)
    }
}

impl Repository {
    /// Creates a repository in an empty location.
    pub fn init(store: Arc<dyn Store>, passphrase: &[u8], opts: &InitOptions, cache_dir: &Path) -> crate::Result<Repository> {
        if read_config(&*store)?.is_some() {
            return Err(RepoError::AlreadyExists(store.describe()).into());
        }
        let master = MasterKey::generate();
        let mut config = Config::new(now());
        if let Some(l) = opts.compression_level {
            config.set_compression(l);
        }
        if let Some(l) = opts.bundle_compression_level {
            config.bundle_compression_level = l;
        }
        if let Some(p) = opts.pack_size {
            config.pack_size = p;
        }
        let kf = KeyFile::wrap(&master, passphrase, opts.kdf, now(), host_name(), user_name())?;
        let key_id = put_key_file(&*store, &kf)?;
        // The config is written last: it is what makes the location a repository.
        if !store.put_if_absent("config", Bytes::from(config.to_json())).context("write repository config")? {
            return Err(RepoError::AlreadyExists(store.describe()).into());
        }
        Ok(Self::assemble(store, config, master, key_id, cache_dir)?)
    }

    /// Opens an existing repository with a passphrase.
    pub fn open(store: Arc<dyn Store>, passphrase: &[u8], cache_dir: &Path) -> crate::Result<Repository> {
        let config = read_config(&*store)?.ok_or_else(|| RepoError::NotARepository(store.describe()))?;
        let (key_id, master) = Self::unlock(&*store, passphrase)?;
        Ok(Self::assemble(store, config, master, key_id, cache_dir)?)
    }

    fn unlock(store: &dyn Store, passphrase: &[u8]) -> Result<(KeyId, MasterKey)> {
        let keys = store.list("keys/").context("list key files")?;
        if keys.is_empty() {
            bail!("repository {} has no key files: it is damaged or not fully created", store.describe());
        }
        let mut problems = Vec::new();
        for k in keys {
            let name = k.key.trim_start_matches("keys/");
            let Some(id) = KeyId::from_hex(name) else {
                continue;
            };
            let bytes = store.get(&k.key).with_context(|| format!("read key file {name}"))?;
            match KeyFile::from_json(&bytes).and_then(|kf| kf.unwrap(passphrase)) {
                Ok(m) => return Ok((id, m)),
                Err(CryptoError::WrongPassphrase) => {}
                Err(e) => problems.push(format!("key file {}: {e}", id.short())),
            }
        }
        for p in &problems {
            tracing::warn!("{p}");
        }
        Err(RepoError::WrongPassphrase(store.describe()).into())
    }

    fn assemble(store: Arc<dyn Store>, config: Config, master: MasterKey, key_id: KeyId, cache_dir: &Path) -> Result<Repository> {
        let dir = cache_dir.join(&config.id);
        // A cache of an older layout is dropped (it is rebuilt from the repository).
        for old in OLD_CACHE_FILES {
            let _ = std::fs::remove_file(dir.join(old));
        }
        let path: PathBuf = dir.join(CACHE_FILE);
        let (cache, temp) = match LocalCache::open(&path, CACHE_PAGE_BYTES) {
            Ok(c) => (c, None),
            Err(e) => {
                // Another ferry process holds the cache (redb locks it): work from a private
                // temporary cache, rebuilt from the repository's index files.
                tracing::warn!("cache {} unavailable ({e:#}); using a temporary cache for this run", path.display());
                let t = tempfile::tempdir().context("create temporary cache")?;
                (LocalCache::open(&t.path().join(CACHE_FILE), CACHE_PAGE_BYTES)?, Some(t))
            }
        };
        let chunker = Chunker::new(config.chunker, master.chunker_seed());
        let cache_dir = temp.as_ref().map_or(dir, |t| t.path().to_path_buf());
        let repo = Repository { id_key: master.id_key(), store, config, master, chunker, cache, key_id, cache_dir, _temp_cache: temp };
        repo.sync_index()?;
        Ok(repo)
    }

    /// Brings the local index up to date with the repository's index files, without the
    /// packs a vault deleted.
    pub fn sync_index(&self) -> crate::Result<()> {
        self.sync_deleted_packs()?;
        let listed = self.store.list("index/").context("list index files")?;
        let repo_ids: std::collections::HashSet<IndexId> =
            listed.iter().filter_map(|o| IndexId::from_hex(o.key.trim_start_matches("index/"))).collect();
        let known: std::collections::HashSet<IndexId> = self.cache.index_files()?.into_iter().collect();
        if !known.is_subset(&repo_ids) {
            // Index files were removed (prune rewrote the index): start over.
            self.cache.clear_index()?;
            return Ok(self.load_index_files(&repo_ids)?);
        }
        let missing: std::collections::HashSet<IndexId> = repo_ids.difference(&known).copied().collect();
        Ok(self.load_index_files(&missing)?)
    }

    /// Reads the `deleted-packs/` records not seen before (a vault writes one before it deletes
    /// packs that no kept recovery point uses) and drops those packs from the local index.
    fn sync_deleted_packs(&self) -> Result<()> {
        let known = self.cache.deleted_records()?;
        let mut records = Vec::new();
        for o in self.store.list(DeletedPacks::PREFIX).context("list deleted-packs records")? {
            if known.contains(&o.key) {
                continue;
            }
            let bytes = self.store.get(&o.key).with_context(|| format!("read {}", o.key))?;
            // A record that does not parse cannot be applied, and ignoring it could let a
            // backup deduplicate against a deleted pack: refuse to go on.
            let d = DeletedPacks::decode(&bytes).with_context(|| {
                format!("{} is damaged; the vault wrote it to say which packs it deleted: ask the vault's operator", o.key)
            })?;
            records.push((o.key, d.packs));
        }
        if records.is_empty() {
            return Ok(());
        }
        if self.cache.apply_deleted_packs(&records)? {
            tracing::info!("the vault deleted packs this cache indexed: rebuilding the local index");
        }
        Ok(())
    }

    /// Whether a vault deleted this pack (it stays listed in index files written before).
    pub fn is_pack_deleted(&self, id: &PackId) -> crate::Result<bool> {
        self.cache.is_pack_deleted(id)
    }

    fn load_index_files(&self, ids: &std::collections::HashSet<IndexId>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            match self.read_index_file(id) {
                Ok(f) => self.cache.add_index_file(id, &f)?,
                // A damaged index file must not lock users out: `check` names it, and the
                // packs it listed are found again by `prune` (as unindexed) or a rebuild.
                Err(e) if !is_transient(&e) => {
                    tracing::warn!("skipping damaged index file {}: {e:#}", id.short());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.cache.persist()?)
    }

    /// Reads and decrypts one index file.
    pub fn read_index_file(&self, id: &IndexId) -> crate::Result<IndexFile> {
        let bytes = self.store.get(&id.object_key()).with_context(|| format!("read index file {}", id.short()))?;
        Ok(IndexFile::open(&self.master, id, &bytes).with_context(|| format!("open index file {}", id.short()))?)
    }

    /// Calls `f` with every pack in the store (ID, size), one `data/XX/` folder at a time, so a
    /// repository of millions of packs is never listed into memory at once.
    pub fn for_each_stored_pack(&self, mut f: impl FnMut(PackId, u64) -> crate::Result<()>) -> crate::Result<()> {
        for dir in 0..=255u8 {
            let prefix = format!("data/{dir:02x}/");
            for o in self.store.list(&prefix).with_context(|| format!("list {prefix}"))? {
                if let Some(id) = o.key.rsplit('/').next().and_then(PackId::from_hex) {
                    f(id, o.size)?;
                }
            }
        }
        Ok(())
    }

    /// All index file IDs in the repository.
    pub fn list_index_files(&self) -> crate::Result<Vec<IndexId>> {
        Ok(self.store.list("index/")?.iter().filter_map(|o| IndexId::from_hex(o.key.trim_start_matches("index/"))).collect())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn master(&self) -> &MasterKey {
        &self.master
    }
    pub fn id_key(&self) -> &IdKey {
        &self.id_key
    }
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    /// This repository's folder in the cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn cache(&self) -> &LocalCache {
        &self.cache
    }
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The ID of a blob's plaintext.
    pub fn blob_id(&self, plain: &[u8]) -> BlobId {
        BlobId::from_bytes(self.id_key.hash(plain))
    }

    /// Reads, decrypts and verifies one blob.
    pub fn read_blob(&self, kind: BlobKind, id: &BlobId) -> crate::Result<Vec<u8>> {
        let loc = self.cache.lookup(kind, id)?.ok_or(RepoError::MissingBlob(*id))?;
        self.read_blob_at(&loc)
    }

    /// Reads a blob at a known location.
    pub fn read_blob_at(&self, loc: &BlobLocation) -> crate::Result<Vec<u8>> {
        let unit = self.read_unit(loc)?;
        Ok(self.unit_member(loc, &unit)?.to_vec())
    }

    /// Reads and decrypts the whole stored unit holding the blob at `loc` (one ranged read of
    /// its pack): the blob's plaintext for a unit of one blob, every member's for a bundle. Take
    /// the blob out, checked against its ID, with [`Repository::unit_member`].
    pub fn read_unit(&self, loc: &BlobLocation) -> crate::Result<Vec<u8>> {
        let (salt, _) = self.cache.pack_info(&loc.pack)?.ok_or(RepoError::MissingBlob(loc.entry.id))?;
        let stored = self
            .store
            .get_range(&loc.pack.object_key(), u64::from(loc.entry.offset)..u64::from(loc.entry.offset) + u64::from(loc.entry.length))
            .with_context(|| format!("read blob {} from pack {}", loc.entry.id.short(), loc.pack.short()))?;
        let (mut scratch, mut plain) = (Vec::new(), Vec::new());
        self.open_unit_into(loc, &salt, &stored, &mut scratch, &mut plain)?;
        Ok(plain)
    }

    /// Decrypts (and decompresses) `stored`, the bytes of the unit holding the blob at `loc`,
    /// into `plain`; `scratch` holds the still compressed payload.
    fn open_unit_into(
        &self,
        loc: &BlobLocation,
        salt: &[u8; 16],
        stored: &[u8],
        scratch: &mut Vec<u8>,
        plain: &mut Vec<u8>,
    ) -> crate::Result<()> {
        let key = self.master.pack_key(salt);
        blob::open_unit_into(
            &key,
            loc.entry.kind,
            &loc.entry.unit_aad_id(),
            stored,
            loc.entry.compressed,
            loc.entry.unit_len,
            scratch,
            plain,
        )
        .with_context(|| format!("blob {} in pack {} is damaged", loc.entry.id.short(), loc.pack.short()))?;
        Ok(())
    }

    /// The blob at `loc` taken out of its unit's plaintext `unit`, checked against its ID.
    pub fn unit_member<'u>(&self, loc: &BlobLocation, unit: &'u [u8]) -> crate::Result<&'u [u8]> {
        Ok(blob::member(&self.id_key, &loc.entry.id, unit, loc.entry.unit_start, loc.entry.raw_len)
            .with_context(|| format!("blob {} in pack {} is damaged", loc.entry.id.short(), loc.pack.short()))?)
    }

    /// Reads and decodes a tree.
    pub fn load_tree(&self, id: &BlobId) -> crate::Result<Tree> {
        let data = self.read_blob(BlobKind::Tree, id)?;
        Ok(Tree::decode(&data).with_context(|| format!("decode tree {}", id.short()))?)
    }

    /// Reads a whole pack object.
    pub fn read_pack(&self, id: &PackId) -> crate::Result<Bytes> {
        Ok(self.store.get(&id.object_key()).with_context(|| format!("read pack {}", id.short()))?)
    }

    /// Stores a recovery point (the commit point of a backup).
    pub fn save_recovery_point(&self, rp: &RecoveryPoint) -> crate::Result<RecoveryPointId> {
        let (id, bytes) = rp.seal(&self.master);
        self.store.put_if_absent(&id.object_key(), Bytes::from(bytes)).context("store recovery point")?;
        Ok(id)
    }

    /// Every pack that holds a blob of the tree `root` or below (what a recovery point's pack
    /// list must name; reads every tree).
    pub fn packs_of_tree(&self, root: &BlobId) -> crate::Result<Vec<PackId>> {
        fn locate(cache: &LocalCache, packs: &mut HashSet<PackId>, kind: BlobKind, id: &BlobId) -> Result<()> {
            let loc = cache.lookup(kind, id)?.with_context(|| format!("{kind:?} blob {} is not indexed", id.short()))?;
            packs.insert(loc.pack);
            Ok(())
        }
        let mut packs = HashSet::new();
        let mut seen_trees = HashSet::from([*root]);
        locate(&self.cache, &mut packs, BlobKind::Tree, root)?;
        crate::tree_walk::walk(self, root, &mut |_, n| {
            for c in &n.content {
                locate(&self.cache, &mut packs, BlobKind::Data, c)?;
            }
            match n.subtree {
                Some(s) if n.kind == NodeKind::Dir => {
                    locate(&self.cache, &mut packs, BlobKind::Tree, &s)?;
                    Ok(seen_trees.insert(s))
                }
                _ => Ok(false),
            }
        })?;
        Ok(packs.into_iter().collect())
    }

    /// Stores a recovery point and, before it, its pack list (`packlists/<id>`: `packs`, every
    /// pack holding a blob of it), from which a vault enforces retention without the key.
    pub fn save_recovery_point_with_pack_list(&self, rp: &RecoveryPoint, packs: Vec<PackId>) -> crate::Result<RecoveryPointId> {
        let (id, bytes) = rp.seal(&self.master);
        // Domain-separated keyed hash: the vault can group without learning host or paths.
        let mut g = b"ferry retention group v1\0".to_vec();
        g.extend_from_slice(rp.host.as_bytes());
        for p in &rp.paths {
            g.push(0);
            g.extend_from_slice(p.as_bytes());
        }
        let group = self.blob_id(&g).to_hex();
        let list = PackList::new(id, rp.time.clone(), group, packs);
        self.store.put_if_absent(&PackList::object_key(&id), Bytes::from(list.encode())).context("store the recovery point's pack list")?;
        self.store.put_if_absent(&id.object_key(), Bytes::from(bytes)).context("store recovery point")?;
        Ok(id)
    }

    /// All recovery points, oldest first. Damaged ones are reported and skipped.
    pub fn recovery_points(&self) -> crate::Result<Vec<(RecoveryPointId, RecoveryPoint)>> {
        let (points, damaged) = self.recovery_points_checked()?;
        for (id, e) in damaged {
            tracing::warn!("recovery point {} is damaged and skipped: {e}", id.short());
        }
        Ok(points)
    }

    /// All recovery points, oldest first, and the damaged ones with their problem.
    pub fn recovery_points_checked(&self) -> crate::Result<(Vec<Point>, Vec<DamagedPoint>)> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for id in self.recovery_point_ids()? {
            match self.read_recovery_point(&id)? {
                Some(Ok(rp)) => out.push((id, rp)),
                Some(Err(e)) => damaged.push((id, e)),
                None => {} // deleted meanwhile
            }
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((out, damaged))
    }

    /// The IDs of the recovery points in the store, in no order (one listing, nothing read).
    pub fn recovery_point_ids(&self) -> crate::Result<Vec<RecoveryPointId>> {
        let listed = self.store.list("recovery-points/").context("list recovery points")?;
        Ok(listed.iter().filter_map(|o| RecoveryPointId::from_hex(o.key.trim_start_matches("recovery-points/"))).collect())
    }

    /// Reads one recovery point: `None` when it is gone (deleted since it was listed),
    /// `Some(Err(why))` when it is damaged; a store failure is an error.
    pub fn read_recovery_point(&self, id: &RecoveryPointId) -> crate::Result<Option<std::result::Result<RecoveryPoint, String>>> {
        let bytes = match self.store.get(&id.object_key()) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(anyhow::Error::from(e).context("read recovery point").into()),
        };
        Ok(Some(RecoveryPoint::open(&self.master, id, &bytes).map_err(|e| e.to_string())))
    }

    /// Finds a recovery point by full ID, unique prefix, or `latest`.
    pub fn resolve(&self, spec: &str) -> crate::Result<(RecoveryPointId, RecoveryPoint)> {
        let all = self.recovery_points()?;
        if spec == "latest" {
            return Ok(all.into_iter().last().ok_or(RepoError::NoRecoveryPoints)?);
        }
        let mut matches: Vec<_> = all.into_iter().filter(|(id, _)| id.to_hex().starts_with(&spec.to_ascii_lowercase())).collect();
        match matches.len() {
            0 => Err(RepoError::NoRecoveryPointMatches(spec.to_string()).into()),
            1 => Ok(matches.remove(0)),
            n => bail!("{n} recovery points start with {spec:?}: give more digits"),
        }
    }

    // ---- keys ----

    /// All key slots: ID, key file, and whether it is the one that opened this session.
    pub fn list_keys(&self) -> crate::Result<Vec<(KeyId, KeyFile, bool)>> {
        let mut out = Vec::new();
        for o in self.store.list("keys/")? {
            let Some(id) = KeyId::from_hex(o.key.trim_start_matches("keys/")) else {
                continue;
            };
            let kf = KeyFile::from_json(&self.store.get(&o.key)?).with_context(|| format!("read key file {}", id.short()))?;
            out.push((id, kf, id == self.key_id));
        }
        out.sort_by(|a, b| a.1.created.cmp(&b.1.created));
        Ok(out)
    }

    /// Adds a key slot for another passphrase.
    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> crate::Result<KeyId> {
        let kf = KeyFile::wrap(&self.master, passphrase, kdf, now(), host_name(), user_name())?;
        Ok(put_key_file(&*self.store, &kf)?)
    }

    /// Removes a key slot by ID or unique prefix. The slot in use and the last slot are refused.
    pub fn remove_key(&self, spec: &str) -> crate::Result<KeyId> {
        let keys = self.list_keys()?;
        let m: Vec<_> = keys.iter().filter(|(id, _, _)| id.to_hex().starts_with(spec)).collect();
        let (id, _, current) = match m.len() {
            0 => bail!("no key matches {spec:?} (see `ferry key list`)"),
            1 => m[0],
            _ => bail!("several keys start with {spec:?}: give more digits"),
        };
        if *current {
            bail!("key {} is the one in use: open the repository with another passphrase to remove it", id.short());
        }
        self.store.delete(&id.object_key())?;
        Ok(*id)
    }

    /// Replaces the current key slot by one for a new passphrase.
    pub fn change_passphrase(&mut self, new: &[u8], kdf: KdfParams) -> crate::Result<KeyId> {
        let new_id = self.add_key(new, kdf)?;
        // The new slot exists before the old one goes: MUST happen in this order.
        self.store.delete(&self.key_id.object_key())?;
        self.key_id = new_id;
        Ok(new_id)
    }
}
