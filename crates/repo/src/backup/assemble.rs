//! The assembler: builds each folder's tree from its finished entries (waiting for its files'
//! chunk IDs), the root chain above the backed-up paths, and commits files cache records at
//! checkpoints. Also seeds an empty files cache from the previous recovery point.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use ferry_format::tree::{Node, NodeKind, Tree};
use ferry_format::{BlobId, BlobKind};

use super::{fsmeta, paths_as_strings, ChunkRef, Content, Entry, Item, ReadFile, Shared};
use crate::cache::{FileEntry, FolderFiles};
use crate::Repository;

/// With a new (or lost) local cache, fills the files cache from the latest recovery point of the
/// same paths, so its unchanged files (same size, mtime, ctime and inode) are not read again.
pub(super) fn seed_files_cache(repo: &Repository, paths: &[PathBuf]) -> Result<()> {
    if !repo.cache().files_is_empty()? {
        return Ok(());
    }
    let wanted = paths_as_strings(paths);
    let Some((id, parent)) = repo.recovery_points()?.into_iter().rev().find(|(_, rp)| rp.paths == wanted) else {
        return Ok(());
    };
    let mut batch = Done::default();
    seed_folder(repo, &parent.tree, Path::new("/"), &mut batch).with_context(|| format!("read parent recovery point {}", id.short()))?;
    Ok(repo.cache().put_folders(&batch.folders)?)
}

/// One folder's files cache record from its tree, then its subfolders'.
fn seed_folder(repo: &Repository, tree: &BlobId, here: &Path, batch: &mut Done) -> Result<()> {
    let t = repo.load_tree(tree)?;
    let files: Vec<_> = t.nodes.iter().filter(|n| n.kind == NodeKind::File).map(cache_entry).collect();
    if !files.is_empty() {
        batch.push(FolderFiles { folder: here.as_os_str().as_bytes().to_vec(), files, replace: true });
        if batch.files >= 20_000 {
            repo.cache().put_folders(&std::mem::take(batch).folders)?;
        }
    }
    for n in &t.nodes {
        if let (NodeKind::Dir, Some(sub)) = (n.kind, &n.subtree) {
            seed_folder(repo, sub, &here.join(std::ffi::OsStr::from_bytes(&n.name)), batch)?;
        }
    }
    Ok(())
}

type Assembled = (Vec<Option<Node>>, Vec<FolderFiles>);

/// Files cache records not yet committed (the next checkpoint commits them), and the number of
/// files they hold.
#[derive(Default)]
struct Done {
    folders: Vec<FolderFiles>,
    files: usize,
}

impl Done {
    fn push(&mut self, f: FolderFiles) {
        self.files += f.files.len();
        self.folders.push(f);
    }
}

/// What became of a finished entry, for the files cache.
enum Finished {
    /// Not a regular file.
    Other,
    /// A file reused from the files cache.
    Cached,
    /// A file read (new or changed).
    Read,
}

fn cache_entry(n: &Node) -> (Vec<u8>, FileEntry) {
    (n.name.clone(), FileEntry { size: n.size, mtime_ns: n.mtime_ns, ctime_ns: n.ctime_ns, inode: n.inode, content: n.content.clone() })
}

pub(super) fn assemble(sh: &Shared<'_>, items: Receiver<Item>, n_top: usize, every: Duration) -> Result<Assembled> {
    let mut subtrees: HashMap<u64, BlobId> = HashMap::new();
    let mut tops: Vec<Option<Node>> = vec![None; n_top];
    let mut done = Done::default();
    let mut last_checkpoint = Instant::now();
    for item in items {
        match item {
            Item::Dir { seq, path, entries, listed, cached } => {
                let mut tree = Tree { nodes: Vec::with_capacity(entries.len()) };
                let mut files = Vec::new();
                let mut read_any = false;
                for e in entries {
                    if let Some((n, how)) = finish_entry(sh, e, &mut subtrees)? {
                        match how {
                            Finished::Other => {}
                            Finished::Cached => files.push(cache_entry(&n)),
                            Finished::Read => {
                                read_any = true;
                                files.push(cache_entry(&n));
                            }
                        }
                        tree.nodes.push(n);
                    }
                }
                let id = store_tree(sh, &mut tree).with_context(|| format!("store tree of {}", path.display()))?;
                sh.counters.dirs.fetch_add(1, Ordering::Relaxed);
                subtrees.insert(seq, id);
                // The record is rewritten when a file was read, or when files went away (no file
                // read and as many reused as recorded means the record is as it was). A folder
                // not listed in full only adds to its record.
                if read_any || files.len() != cached {
                    done.push(FolderFiles { folder: path.into_os_string().into_vec(), files, replace: listed });
                }
            }
            Item::Top { index, entry } => {
                let folder = entry.path.parent().map(|p| p.as_os_str().as_bytes().to_vec());
                let finished = finish_entry(sh, *entry, &mut subtrees)?;
                if let (Some((n, Finished::Read)), Some(folder)) = (&finished, folder) {
                    done.push(FolderFiles { folder, files: vec![cache_entry(n)], replace: false });
                }
                tops[index] = finished.map(|(n, _)| n);
            }
        }
        if last_checkpoint.elapsed() >= every || done.files >= 10_000 {
            sh.sink.checkpoint(std::mem::take(&mut done).folders)?;
            last_checkpoint = Instant::now();
        }
    }
    Ok((tops, done.folders))
}

fn finish_entry(sh: &Shared<'_>, e: Entry, subtrees: &mut HashMap<u64, BlobId>) -> Result<Option<(Node, Finished)>> {
    let mut node = e.node;
    let how = match e.content {
        Content::None => Finished::Other,
        Content::Dir(seq) => {
            node.subtree = subtrees.remove(&seq);
            Finished::Other
        }
        Content::Cached(ids) => {
            node.content = ids;
            sh.counters.files_unchanged.fetch_add(1, Ordering::Relaxed);
            sh.progress.add_done(1, 0);
            Finished::Cached
        }
        Content::Pending { rx, changed } => {
            let ReadFile { chunks: chunk_refs, read, xattrs, sparse } = match rx.recv() {
                Ok(Ok(c)) => c,
                Ok(Err(msg)) => {
                    sh.error(&e.path, msg);
                    return Ok(None);
                }
                Err(_) => return Err(sh.sink.take_error().unwrap_or_else(|| anyhow::anyhow!("a reader thread stopped"))),
            };
            let mut ids = Vec::with_capacity(chunk_refs.len());
            for r in chunk_refs {
                let r = match r {
                    ChunkRef::Done(id) => {
                        ids.push(id);
                        continue;
                    }
                    ChunkRef::Pending(rx) => rx,
                };
                match r.recv() {
                    Ok(Ok(id)) => ids.push(id),
                    Ok(Err(msg)) => return Err(sh.sink.take_error().unwrap_or_else(|| anyhow::anyhow!("{msg}"))),
                    Err(_) => return Err(sh.sink.take_error().unwrap_or_else(|| anyhow::anyhow!("a hasher thread stopped"))),
                }
            }
            let counter = if changed { &sh.counters.files_changed } else { &sh.counters.files_new };
            counter.fetch_add(1, Ordering::Relaxed);
            sh.progress.add_done(1, 0);
            node.content = ids;
            node.size = read;
            node.xattrs = xattrs;
            node.sparse = sparse;
            Finished::Read
        }
    };
    Ok(Some((node, how)))
}

fn store_tree(sh: &Shared<'_>, tree: &mut Tree) -> Result<BlobId> {
    if let Some(old) = &sh.old_packs {
        // A blob not indexed yet is in one of this backup's own packs (stored, or still being
        // filled): the sink stores only what the index lacks.
        let mut found = Vec::new();
        for n in &tree.nodes {
            for c in &n.content {
                found.extend(sh.repo.cache().lookup(BlobKind::Data, c)?.map(|l| l.pack));
            }
            if let Some(s) = &n.subtree {
                found.extend(sh.repo.cache().lookup(BlobKind::Tree, s)?.map(|l| l.pack));
            }
        }
        old.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(found);
    }
    let bytes = tree.encode();
    let id = sh.repo.blob_id(&bytes);
    sh.sink.add(BlobKind::Tree, id, &bytes)?;
    Ok(id)
}

/// Builds the chain of folders from `/` down to each backed-up path.
pub(super) fn build_root(sh: &Shared<'_>, paths: &[PathBuf], tops: Vec<Option<Node>>) -> Result<BlobId> {
    if paths.len() == 1 && paths[0] == Path::new("/") {
        if let Some(Some(n)) = tops.into_iter().next() {
            if let Some(t) = n.subtree {
                return Ok(t);
            }
        }
        return store_tree(sh, &mut Tree::default());
    }
    #[derive(Default)]
    struct Dir {
        children: BTreeMap<OsString, Dir>,
        node: Option<Node>,
    }
    let mut root = Dir::default();
    for (path, node) in paths.iter().zip(tops) {
        let Some(node) = node else { continue };
        let mut d = &mut root;
        for c in path.components().filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        }) {
            d = d.children.entry(c).or_default();
        }
        d.node = Some(node);
    }
    fn build(sh: &Shared<'_>, here: &Path, d: Dir) -> Result<BlobId> {
        let mut tree = Tree::default();
        for (name, child) in d.children {
            let path = here.join(&name);
            let node = if let Some(n) = child.node {
                n
            } else {
                let meta = fs::symlink_metadata(&path).with_context(|| format!("read metadata of {}", path.display()))?;
                let mut n = fsmeta::node_for(&path, &name, &meta, true).with_context(|| format!("read metadata of {}", path.display()))?;
                n.kind = NodeKind::Dir;
                n.subtree = Some(build(sh, &path, child)?);
                n
            };
            tree.nodes.push(node);
        }
        store_tree(sh, &mut tree)
    }
    build(sh, Path::new("/"), root)
}
