//! Trees: one blob per directory, listing its entries sorted by name.
//!
//! ```text
//! tree_blob := "FRYTRE" || version(u16 le) || postcard(Vec<Node>) [ || postcard(Vec<u64>) ]
//! ```
//! The encoding is deterministic (fixed field order, entries sorted by name bytes, xattrs sorted
//! by name), so an unchanged directory yields the same bytes and the same ID, and deduplicates.
//!
//! Version 2 adds the nodes' flags after them (one varint per node, in node order; bit 0:
//! [`Node::sparse`]). A tree none of whose nodes has a flag is written as version 1, byte for
//! byte as before version 2 existed: unchanged folders keep their IDs across the upgrade, and
//! older readers still read every tree without a sparse file. Version 1 trees decode with every
//! flag clear.

use serde::{Deserialize, Serialize};

use crate::{BlobId, FormatError};

const MAGIC: &[u8; 6] = b"FRYTRE";
/// The newest tree version this code writes and reads (it writes version 1 when no node has a
/// flag, see the module's documentation).
pub const VERSION: u16 = 2;
/// The first version, without node flags.
const VERSION_NO_FLAGS: u16 = 1;
/// Node flag: [`Node::sparse`].
const FLAG_SPARSE: u64 = 1;
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
    /// A regular file had holes when it was backed up (`restore --sparse auto` restores holes
    /// in such files only). Encoded among the tree's node flags (version 2), not in the node's
    /// own fields, so that the node layout of version 1 is unchanged.
    #[serde(skip)]
    pub sparse: bool,
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
        let flags: Vec<u64> = self.nodes.iter().map(|n| if n.sparse { FLAG_SPARSE } else { 0 }).collect();
        let any_flag = flags.iter().any(|f| *f != 0);
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&if any_flag { VERSION } else { VERSION_NO_FLAGS }.to_le_bytes());
        postcard::to_io(&self.nodes, &mut out).expect("tree serializes");
        if any_flag {
            postcard::to_io(&flags, &mut out).expect("flags serialize");
        }
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
        let (mut nodes, rest): (Vec<Node>, _) = postcard::take_from_bytes(&data[8..]).map_err(|e| FormatError::malformed(WHAT, e))?;
        if version >= 2 {
            let (flags, rest): (Vec<u64>, _) = postcard::take_from_bytes(rest).map_err(|e| FormatError::malformed(WHAT, e))?;
            if flags.len() != nodes.len() || !rest.is_empty() {
                return Err(FormatError::malformed(WHAT, "node flags do not match the nodes"));
            }
            for (n, f) in nodes.iter_mut().zip(flags) {
                if f & !FLAG_SPARSE != 0 {
                    return Err(FormatError::malformed(WHAT, format!("unknown node flags {f:#x}")));
                }
                n.sparse = f & FLAG_SPARSE != 0;
            }
        }
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
            sparse: false,
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
        // Version 1, as every tree was before version 2 existed: no flags.
        assert!(!Tree::decode(&expected).unwrap().nodes[0].sparse);

        // Version 2: the same node, then its flags (1 flag: sparse).
        t.nodes[0].sparse = true;
        let v2: Vec<u8> = [&b"FRYTRE\x02\x00"[..], &expected[8..], &[1, 1]].concat();
        assert_eq!(t.encode(), v2);
        assert_eq!(Tree::decode(&v2).unwrap(), t);
    }

    #[test]
    fn node_flags_must_match_the_nodes() {
        let mut n = node("x");
        n.sparse = true;
        let good = Tree { nodes: vec![n, node("y")] }.encode();
        assert_eq!(&good[good.len() - 3..], &[2, 1, 0], "two flags: x sparse, y not");
        assert!(Tree::decode(&good).is_ok());
        let with = |tail: &[u8]| [&good[..good.len() - 3], tail].concat();
        for (bad, why) in [
            (with(&[1, 1]), "fewer flags than nodes"),
            (with(&[3, 1, 0, 0]), "more flags than nodes"),
            (with(&[2, 1, 2]), "an unknown flag"),
            (with(&[2, 1]), "cut short"),
            (with(&[2, 1, 0, 9]), "bytes after the flags"),
        ] {
            assert!(Tree::decode(&bad).is_err(), "{why}");
        }
        let mut newer = good.clone();
        newer[6] = 3;
        assert!(matches!(Tree::decode(&newer), Err(FormatError::NewerVersion { .. })));
    }

    proptest! {
        #[test]
        fn prop_round_trip(names in proptest::collection::btree_set("[a-z]{1,8}", 0..20), size in 0u64..u64::MAX, mtime in i64::MIN..i64::MAX, sparse in proptest::collection::vec(proptest::bool::ANY, 20)) {
            let mut t = Tree { nodes: names.iter().zip(sparse).map(|(n, s)| { let mut x = node(n); x.size = size; x.mtime_ns = mtime; x.sparse = s; x }).collect() };
            let e = t.encode();
            prop_assert_eq!(Tree::decode(&e).unwrap(), t);
        }

        #[test]
        fn prop_garbage_never_panics(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), version in 1u8..=2) {
            if bytes.len() > 8 { bytes[..8].copy_from_slice(b"FRYTRE\x01\x00"); bytes[6] = version; }
            let _ = Tree::decode(&bytes);
        }
    }
}
