//! Differences between two recovery points. Equal subtrees (same ID) are skipped unread.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::Result;
use ferry_format::tree::{Node, NodeKind};
use ferry_format::BlobId;

use crate::Repository;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    /// Content changed.
    Modified,
    /// Only metadata (mode, owner, times, xattrs) changed.
    Metadata,
    /// The kind changed (file became a folder, ...).
    Type,
}

impl Change {
    pub fn symbol(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
            Change::Type => 'T',
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DiffEntry {
    pub change: Change,
    pub path: String,
}

/// Lists what differs between trees `a` and `b`.
pub fn diff(repo: &Repository, a: &BlobId, b: &BlobId) -> crate::Result<Vec<DiffEntry>> {
    let mut out = Vec::new();
    diff_trees(repo, Some(a), Some(b), Path::new("/"), &mut out)?;
    Ok(out)
}

fn children(repo: &Repository, t: Option<&BlobId>) -> Result<BTreeMap<Vec<u8>, Node>> {
    Ok(match t {
        Some(id) => repo.load_tree(id)?.nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
        None => BTreeMap::new(),
    })
}

fn diff_trees(repo: &Repository, a: Option<&BlobId>, b: Option<&BlobId>, here: &Path, out: &mut Vec<DiffEntry>) -> Result<()> {
    if a.is_some() && a == b {
        return Ok(());
    }
    let (mut ca, mut cb) = (children(repo, a)?, children(repo, b)?);
    let names: std::collections::BTreeSet<Vec<u8>> = ca.keys().chain(cb.keys()).cloned().collect();
    for name in names {
        let path = here.join(OsStr::from_bytes(&name));
        let p = path.display().to_string();
        match (ca.remove(&name), cb.remove(&name)) {
            (Some(x), None) => {
                out.push(DiffEntry { change: Change::Removed, path: p });
                if x.kind == NodeKind::Dir {
                    diff_trees(repo, x.subtree.as_ref(), None, &path, out)?;
                }
            }
            (None, Some(y)) => {
                out.push(DiffEntry { change: Change::Added, path: p });
                if y.kind == NodeKind::Dir {
                    diff_trees(repo, None, y.subtree.as_ref(), &path, out)?;
                }
            }
            (Some(x), Some(y)) => {
                if x.kind != y.kind {
                    out.push(DiffEntry { change: Change::Type, path: p });
                } else if x.kind == NodeKind::Dir {
                    if x.mode != y.mode || x.uid != y.uid || x.gid != y.gid || x.xattrs != y.xattrs {
                        out.push(DiffEntry { change: Change::Metadata, path: p });
                    }
                    diff_trees(repo, x.subtree.as_ref(), y.subtree.as_ref(), &path, out)?;
                } else if x.content != y.content || x.target != y.target || x.rdev != y.rdev {
                    out.push(DiffEntry { change: Change::Modified, path: p });
                } else if x.mode != y.mode || x.uid != y.uid || x.gid != y.gid || x.mtime_ns != y.mtime_ns || x.xattrs != y.xattrs {
                    out.push(DiffEntry { change: Change::Metadata, path: p });
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}
