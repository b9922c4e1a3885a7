//! Reading a file system entry's metadata into a tree node.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use ferry_format::tree::{Node, NodeKind};

pub(crate) fn kind_of(meta: &Metadata) -> NodeKind {
    let ft = meta.file_type();
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

pub(crate) fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec())
}

pub(crate) fn ctime_ns(meta: &Metadata) -> i64 {
    meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec())
}

/// Builds a node (without content or subtree) for `path`, named `name`, with its extended
/// attributes if `with_xattrs` (a file to be read gets them from its open descriptor instead,
/// see [`fd_xattrs`]). Extended attributes that cannot be read are left out (some file systems
/// do not support them).
pub(crate) fn node_for(path: &Path, name: &OsStr, meta: &Metadata, with_xattrs: bool) -> std::io::Result<Node> {
    let kind = kind_of(meta);
    let target = if kind == NodeKind::Symlink { std::fs::read_link(path)?.as_os_str().as_bytes().to_vec() } else { Vec::new() };
    Ok(Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: mtime_ns(meta),
        ctime_ns: ctime_ns(meta),
        inode: meta.ino(),
        device: meta.dev(),
        links: meta.nlink(),
        size: if kind == NodeKind::File { meta.size() } else { 0 },
        content: Vec::new(),
        subtree: None,
        target,
        rdev: if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) { meta.rdev() } else { 0 },
        xattrs: if with_xattrs { path_xattrs(path) } else { Vec::new() },
        sparse: false,
    })
}

/// Whether a regular file may have holes: fewer bytes allocated than its length (from the
/// `stat` the walker made anyway). Not enough alone: a file system that compresses (btrfs,
/// ZFS) allocates fewer blocks for data too, so [`has_hole`] asks the file itself. Nor is
/// `SEEK_HOLE` enough alone: ext4 reports a preallocated file's unwritten extents as holes,
/// while its blocks are all allocated (and such a file is one to restore allocated).
pub(crate) fn may_have_holes(meta: &Metadata) -> bool {
    meta.blocks().saturating_mul(512) < meta.size()
}

/// Whether the open file `f`, `size` bytes long, has a hole before its end (`SEEK_HOLE`; a
/// file system without it reports none). Leaves the file's offset at 0, where a reader starts.
pub(crate) fn has_hole(f: &std::fs::File, size: u64) -> bool {
    let hole = rustix::fs::seek(f, rustix::fs::SeekFrom::Hole(0));
    let _ = rustix::fs::seek(f, rustix::fs::SeekFrom::Start(0));
    hole.is_ok_and(|at| at < size)
}

/// [`may_have_holes`], then [`has_hole`] on the file at `path` (opened without following a
/// symlink), for a file that is not read.
pub(crate) fn path_has_holes(path: &Path, meta: &Metadata) -> bool {
    may_have_holes(meta)
        && rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .is_ok_and(|fd| has_hole(&std::fs::File::from(fd), meta.size()))
}

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The extended attributes of `path` itself (a symlink's own, not its target's).
pub(crate) fn path_xattrs(path: &Path) -> Xattrs {
    collect_xattrs(|buf| rustix::fs::llistxattr(path, buf), || xattr::list(path).map(std::iter::Iterator::collect), |n| xattr::get(path, n))
}

/// The extended attributes of an open file: no path lookup, and they belong to the very file
/// being read even if its name was replaced since it was listed.
pub(crate) fn fd_xattrs(f: &std::fs::File) -> Xattrs {
    use xattr::FileExt;
    collect_xattrs(|buf| rustix::fs::flistxattr(f, buf), || f.list_xattr().map(std::iter::Iterator::collect), |n| f.get_xattr(n))
}

fn collect_xattrs(
    list: impl FnOnce(&mut [u8]) -> rustix::io::Result<usize>,
    list_all: impl FnOnce() -> std::io::Result<Vec<std::ffi::OsString>>,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Xattrs {
    // Most files have none: list them into a buffer on the stack first, so that such a file
    // costs one system call and no allocation (the xattr crate allocates a buffer per call).
    let mut probe = [0u8; 1024];
    let names: Vec<std::ffi::OsString> = match list(&mut probe[..]) {
        Ok(n) => probe[..n].split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsStr::from_bytes(n).to_os_string()).collect(),
        // Longer than the probe: let the xattr crate size the buffer.
        Err(rustix::io::Errno::RANGE) => match list_all() {
            Ok(names) => names,
            Err(_) => return Vec::new(),
        },
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for n in names {
        if let Ok(Some(v)) = get(&n) {
            out.push((n.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holes are found in a sparse file only: not in a file of written zeros, nor in a
    /// preallocated one (fallocate: allocated, unwritten), nor in an empty one.
    #[test]
    fn holes_are_found_where_the_file_has_them() {
        let d = tempfile::tempdir().unwrap();
        let path = |n: &str| d.path().join(n);
        let sparse = std::fs::File::create(path("sparse")).unwrap();
        sparse.set_len(4 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&sparse, b"x", 1 << 20).unwrap();
        std::fs::write(path("zeros"), vec![0u8; 4 << 20]).unwrap();
        let pre = std::fs::File::create(path("preallocated")).unwrap();
        rustix::fs::fallocate(&pre, rustix::fs::FallocateFlags::empty(), 0, 4 << 20).unwrap();
        std::fs::write(path("empty"), b"").unwrap();
        for (name, want) in [("sparse", true), ("zeros", false), ("preallocated", false), ("empty", false)] {
            let meta = std::fs::metadata(path(name)).unwrap();
            assert_eq!(path_has_holes(&path(name), &meta), want, "{name}");
        }
        // The offset is back at the start for the reader.
        let f = std::fs::File::open(path("sparse")).unwrap();
        assert!(has_hole(&f, 4 << 20));
        assert_eq!(rustix::fs::seek(&f, rustix::fs::SeekFrom::Current(0)).unwrap(), 0);
    }

    #[test]
    fn extended_attributes_are_read_whether_their_names_fit_the_probe_or_not() {
        let d = tempfile::tempdir().unwrap();
        let (none, few, many) = (d.path().join("none"), d.path().join("few"), d.path().join("many"));
        for f in [&none, &few, &many] {
            std::fs::write(f, b"x").unwrap();
        }
        if xattr::set(&few, "user.probe", b"1").is_err() {
            eprintln!("skipped: {} has no user extended attributes", d.path().display());
            return;
        }
        // By path and through an open descriptor, alike.
        let both = |p: &Path| {
            let by_path = path_xattrs(p);
            assert_eq!(fd_xattrs(&std::fs::File::open(p).unwrap()), by_path, "{}", p.display());
            by_path
        };
        assert!(both(&none).is_empty());

        xattr::set(&few, "user.b", b"").unwrap();
        assert_eq!(both(&few), vec![(b"user.b".to_vec(), Vec::new()), (b"user.probe".to_vec(), b"1".to_vec())]);

        // 40 names of 40 bytes: a 1,640-byte list, longer than the probe buffer.
        let mut want = Vec::new();
        for i in 0..40 {
            let name = format!("user.{i:035}");
            xattr::set(&many, &name, name.as_bytes()).unwrap();
            want.push((name.clone().into_bytes(), name.into_bytes()));
        }
        assert_eq!(both(&many), want);
    }
}
