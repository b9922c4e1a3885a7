//! Trees: one blob per directory, listing its entries sorted by name.
//!
//! ```text
//! tree_blob := "FRYTRE" || version(u16 le) || postcard(Vec<Node>)
//! ```
//! The encoding is deterministic (fixed field order, entries sorted by name bytes, xattrs sorted
//! by name), so an unchanged directory yields the same bytes and the same ID, and deduplicates.

use serde::{Deserialize, Serialize};

use crate::{BlobId, FormatError};

const MAGIC: &[u8; 6] = b"FRYTRE";
/// The tree version this code writes.
pub const VERSION: u16 = 1;
const WHAT: &str = "tree";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// One directory entry and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The file name's raw bytes (Unix names need not be UTF-8). Never contains '/' and is never
    /// "." or ".." (checked by [`Tree::decode`]).
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
    /// Hard link count; > 1 for files that restore links together.
    pub links: u64,
    pub size: u64,
    /// File content chunks, in order.
    pub content: Vec<BlobId>,
    /// A directory's tree.
    pub subtree: Option<BlobId>,
    /// A symlink's target bytes.
    pub target: Vec<u8>,
    /// Device number of a character or block device.
    pub rdev: u64,
    /// Extended attributes (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    /// The name as text for messages (lossy).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encodes deterministically; sorts entries and xattrs first.
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &mut self.nodes {
            n.xattrs.sort();
        }
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        postcard::to_io(&self.nodes, &mut out).expect("tree serializes");
        out
    }

    /// Decodes a tree read from a repository, refusing names that could escape a restore target.
    pub fn decode(data: &[u8]) -> Result<Tree, FormatError> {
        if data.len() < 8 {
            return Err(FormatError::malformed(WHAT, "shorter than its header"));
        }
        if &data[..6] != MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = u16::from_le_bytes([data[6], data[7]]);
        if version > VERSION {
            return Err(FormatError::NewerVersion { what: WHAT, found: version.into(), supported: VERSION.into() });
        }
        let nodes: Vec<Node> = postcard::from_bytes(&data[8..]).map_err(|e| FormatError::malformed(WHAT, e))?;
        for n in &nodes {
            if n.name.is_empty() || n.name == b"." || n.name == b".." || n.name.contains(&b'/') || n.name.contains(&0) {
                return Err(FormatError::malformed(WHAT, format!("unsafe entry name {:?}", n.name_lossy())));
            }
        }
        Ok(Tree { nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn node(name: &str) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_ns: 1,
            ctime_ns: 2,
            inode: 3,
            device: 4,
            links: 1,
            size: 5,
            content: vec![BlobId::from_bytes([7; 32])],
            subtree: None,
            target: vec![],
            rdev: 0,
            xattrs: vec![(b"user.b".to_vec(), b"2".to_vec()), (b"user.a".to_vec(), b"1".to_vec())],
        }
    }

    #[test]
    fn deterministic_and_sorted() {
        let mut a = Tree { nodes: vec![node("b"), node("a")] };
        let mut b = Tree { nodes: vec![node("a"), node("b")] };
        assert_eq!(a.encode(), b.encode());
        let d = Tree::decode(&a.encode()).unwrap();
        assert_eq!(d.nodes[0].name, b"a");
        assert_eq!(d.nodes[0].xattrs[0].0, b"user.a");
    }

    #[test]
    fn escaping_names_are_refused() {
        for bad in ["..", ".", "a/b", ""] {
            let mut t = Tree { nodes: vec![node(bad)] };
            assert!(Tree::decode(&t.encode()).is_err(), "{bad}");
        }
    }

    #[test]
    fn fixed_bytes() {
        let mut t = Tree { nodes: vec![] };
        assert_eq!(t.encode(), b"FRYTRE\x01\x00\x00");
        let mut n = node("x");
        n.content.clear();
        n.xattrs.clear();
        let mut t = Tree { nodes: vec![n] };
        let e = t.encode();
        // count, name len, 'x', kind File=0, mode 0o644=420 varint, uid 1000, gid 1000, mtime 1 (zigzag 2), ctime 2 (4), inode 3, dev 4, links 1, size 5, no content, no subtree, empty target, rdev 0, no xattrs
        let expected: Vec<u8> =
            [&b"FRYTRE\x01\x00"[..], &[1, 1, b'x', 0, 0xa4, 0x03, 0xe8, 0x07, 0xe8, 0x07, 2, 4, 3, 4, 1, 5, 0, 0, 0, 0, 0]].concat();
        assert_eq!(e, expected);
    }

    proptest! {
        #[test]
        fn prop_round_trip(names in proptest::collection::btree_set("[a-z]{1,8}", 0..20), size in 0u64..u64::MAX, mtime in i64::MIN..i64::MAX) {
            let mut t = Tree { nodes: names.iter().map(|n| { let mut x = node(n); x.size = size; x.mtime_ns = mtime; x }).collect() };
            let e = t.encode();
            prop_assert_eq!(Tree::decode(&e).unwrap(), t);
        }

        #[test]
        fn prop_garbage_never_panics(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if bytes.len() > 8 { bytes[..8].copy_from_slice(b"FRYTRE\x01\x00"); }
            let _ = Tree::decode(&bytes);
        }
    }
}
