//! Walking the trees of a recovery point (what it holds, as stored), not the file system: the
//! backup's file walker is `backup::walk`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ferry_format::tree::{Node, NodeKind};
use ferry_format::BlobId;

use crate::Repository;

/// Visits every node below `tree` depth-first in name order, with its path (starting with
/// `/`). `visit` returns whether to descend into a directory.
pub fn walk(repo: &Repository, tree: &BlobId, visit: &mut dyn FnMut(&Path, &Node) -> crate::Result<bool>) -> crate::Result<()> {
    walk_from(repo, tree, Path::new("/"), visit)
}

fn walk_from(
    repo: &Repository,
    tree: &BlobId,
    here: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> crate::Result<bool>,
) -> crate::Result<()> {
    let t = repo.load_tree(tree)?;
    for n in &t.nodes {
        let path = here.join(std::ffi::OsStr::from_bytes(&n.name));
        let descend = visit(&path, n)?;
        if descend && n.kind == NodeKind::Dir {
            if let Some(sub) = &n.subtree {
                walk_from(repo, sub, &path, visit)?;
            }
        }
    }
    Ok(())
}

/// Finds the node at `path` (absolute, as shown by `ls`) in a recovery point's tree.
pub fn find(repo: &Repository, root: &BlobId, path: &Path) -> crate::Result<Option<(PathBuf, Node)>> {
    let mut tree = *root;
    let mut here = PathBuf::from("/");
    let comps: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    for (i, c) in comps.iter().enumerate() {
        let t = repo.load_tree(&tree)?;
        let Some(n) = t.nodes.into_iter().find(|n| &n.name == c) else {
            return Ok(None);
        };
        here.push(std::ffi::OsStr::from_bytes(c));
        if i + 1 == comps.len() {
            return Ok(Some((here, n)));
        }
        match (n.kind, n.subtree) {
            (NodeKind::Dir, Some(s)) => tree = s,
            _ => return Ok(None),
        }
    }
    Ok(None)
}
