//! The inode table: every entry the kernel has been told about, by inode number.
//!
//! Numbers are handed out as entries are first seen and never reused while mounted: the fixed
//! folders (1-5), a folder per recovery point, host and tag, a link per recovery point in each
//! of those, and the entries of a recovery point's trees, a folder's entries when the folder is
//! first looked into (its tree is read then, not before). Files hard-linked together in a
//! recovery point (same recorded device and inode, more than one link) get one number, so
//! `stat` shows them as one file, as on the machine they came from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use ferry_format::tree::{Node, NodeKind};
use ferry_format::{BlobId, RecoveryPointId};
use ferry_repo::Repository;

pub const ROOT: u64 = 1;
pub const POINTS: u64 = 2;
pub const HOSTS: u64 = 3;
pub const TAGS: u64 = 4;
pub const LATEST: u64 = 5;

/// What an inode is.
#[derive(Debug)]
pub enum What {
    /// The mount's top folder, `recovery-points/`, `hosts/` or `tags/`.
    Fixed,
    /// `latest`: a link to the newest recovery point's folder.
    Latest,
    /// `hosts/<host>/` (`tags == false`) or `tags/<tag>/`.
    Group { tags: bool },
    /// `hosts/<host>/<point>` or `tags/<tag>/<point>`: a link to `../../recovery-points/<point>`.
    PointLink,
    /// `recovery-points/<point>/`: the recovery point's root tree.
    PointRoot { tree: BlobId, time_ns: i64 },
    /// An entry of a recovery point's trees; `point` is its recovery point's folder's inode.
    Node { node: Arc<Node>, point: u64 },
}

/// An entry of a tree folder: its name and inode.
pub type Child = (Box<[u8]>, u64);

#[derive(Debug)]
pub struct Inode {
    pub what: What,
    pub parent: u64,
    /// The entry's name (a tree entry's is its node's).
    name: Vec<u8>,
    /// A tree folder's entries (name, inode), sorted by name, read at the first look into it;
    /// the error message when its tree cannot be read. The names are kept here, not taken from
    /// the inodes: files hard-linked together share one inode under several names.
    children: OnceLock<Result<Vec<Child>, String>>,
}

impl Inode {
    pub fn name(&self) -> &[u8] {
        match &self.what {
            What::Node { node, .. } => &node.name,
            _ => &self.name,
        }
    }

    /// Whether this is a folder of a recovery point (its root or a folder in it).
    pub fn is_tree_folder(&self) -> bool {
        match &self.what {
            What::PointRoot { .. } => true,
            What::Node { node, .. } => node.kind == NodeKind::Dir,
            _ => false,
        }
    }

    /// A recovery point folder's tree (`None` for a folder recorded without one, left out of
    /// the backup: it is empty).
    fn tree(&self) -> Option<BlobId> {
        match &self.what {
            What::PointRoot { tree, .. } => Some(*tree),
            What::Node { node, .. } => node.subtree,
            _ => None,
        }
    }

    fn point(&self, ino: u64) -> u64 {
        match &self.what {
            What::Node { point, .. } => *point,
            _ => ino,
        }
    }
}

/// Keys of the entries made from the recovery-point list, so that a new reading of the list
/// gives the same entries the same numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Point(RecoveryPointId),
    Group { tags: bool, name: Vec<u8> },
    Link { group: u64, point: Vec<u8> },
}

#[derive(Debug)]
pub struct Inodes {
    /// Inode `n` is at `n - 1`.
    table: RwLock<Vec<Arc<Inode>>>,
    keyed: Mutex<HashMap<Key, u64>>,
    /// Hard-linked files: (recovery point folder, device, inode) -> inode number.
    links: Mutex<HashMap<(u64, u64, u64), u64>>,
}

fn fixed(parent: u64, name: &[u8], what: What) -> Arc<Inode> {
    Arc::new(Inode { what, parent, name: name.to_vec(), children: OnceLock::new() })
}

impl Inodes {
    pub fn new() -> Self {
        let table = vec![
            fixed(ROOT, b"", What::Fixed),
            fixed(ROOT, b"recovery-points", What::Fixed),
            fixed(ROOT, b"hosts", What::Fixed),
            fixed(ROOT, b"tags", What::Fixed),
            fixed(ROOT, b"latest", What::Latest),
        ];
        Inodes { table: RwLock::new(table), keyed: Mutex::new(HashMap::new()), links: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        let t = self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        ino.checked_sub(1).and_then(|i| t.get(i as usize)).cloned()
    }

    pub fn count(&self) -> u64 {
        self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner).len() as u64
    }

    fn push(&self, inode: Inode) -> u64 {
        let mut t = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.push(Arc::new(inode));
        t.len() as u64
    }

    /// The number of the entry `key`, made with `what` under `parent` as `name` the first time.
    pub fn keyed(&self, key: Key, parent: u64, name: &[u8], what: impl FnOnce() -> What) -> u64 {
        let mut keyed = self.keyed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ino) = keyed.get(&key) {
            return *ino;
        }
        let ino = self.push(Inode { what: what(), parent, name: name.to_vec(), children: OnceLock::new() });
        keyed.insert(key, ino);
        ino
    }

    /// A tree folder's entries (read from the repository at the first call), sorted by name.
    pub fn children<'i>(&self, repo: &Repository, ino: u64, dir: &'i Inode) -> Result<&'i [Child], String> {
        if !dir.is_tree_folder() {
            return Err("not a folder of a recovery point".into());
        }
        let point = dir.point(ino);
        let loaded = dir.children.get_or_init(|| {
            let Some(tree) = dir.tree() else { return Ok(Vec::new()) };
            let t = repo.load_tree(&tree).map_err(|e| format!("{e:#}"))?;
            Ok(t.nodes.into_iter().map(|node| (node.name.clone().into_boxed_slice(), self.add_node(node, ino, point))).collect())
        });
        loaded.as_ref().map(Vec::as_slice).map_err(Clone::clone)
    }

    fn add_node(&self, node: Node, parent: u64, point: u64) -> u64 {
        let linked = node.kind == NodeKind::File && node.links > 1;
        let key = (point, node.device, node.inode);
        let mut links = self.links.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if linked {
            if let Some(ino) = links.get(&key) {
                return *ino;
            }
        }
        let ino =
            self.push(Inode { what: What::Node { node: Arc::new(node), point }, parent, name: Vec::new(), children: OnceLock::new() });
        if linked {
            links.insert(key, ino);
        }
        ino
    }

    /// The entry `name` of tree folder `dir`.
    pub fn lookup_child(&self, repo: &Repository, ino: u64, dir: &Inode, name: &[u8]) -> Result<Option<u64>, String> {
        let children = self.children(repo, ino, dir)?;
        Ok(children.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| children[i].1))
    }

    /// The path of `ino` in the mount, for messages (a hard-linked file's first name).
    pub fn path(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let Some(i) = self.get(at) else { break };
            parts.push(String::from_utf8_lossy(i.name()).into_owned());
            at = i.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}
