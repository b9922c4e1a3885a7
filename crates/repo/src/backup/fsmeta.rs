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

/// Builds a node (without content or subtree) for `path`, named `name`. Extended attributes
/// that cannot be read are left out (some file systems do not support them).
pub(crate) fn node_for(path: &Path, name: &OsStr, meta: &Metadata) -> std::io::Result<Node> {
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
        xattrs: read_xattrs(path),
    })
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    // Most files have none: list them into a buffer on the stack first, so that such a file
    // costs one system call and no allocation (the xattr crate allocates a buffer per call).
    let mut probe = [0u8; 1024];
    let names: Vec<std::ffi::OsString> = match rustix::fs::llistxattr(path, &mut probe[..]) {
        Ok(n) => probe[..n].split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsStr::from_bytes(n).to_os_string()).collect(),
        // Longer than the probe: let the xattr crate size the buffer.
        Err(rustix::io::Errno::RANGE) => match xattr::list(path) {
            Ok(names) => names.collect(),
            Err(_) => return Vec::new(),
        },
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for n in names {
        if let Ok(Some(v)) = xattr::get(path, &n) {
            out.push((n.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(read_xattrs(&none).is_empty());

        xattr::set(&few, "user.b", b"").unwrap();
        assert_eq!(read_xattrs(&few), vec![(b"user.b".to_vec(), Vec::new()), (b"user.probe".to_vec(), b"1".to_vec())]);

        // 40 names of 40 bytes: a 1,640-byte list, longer than the probe buffer.
        let mut want = Vec::new();
        for i in 0..40 {
            let name = format!("user.{i:035}");
            xattr::set(&many, &name, name.as_bytes()).unwrap();
            want.push((name.clone().into_bytes(), name.into_bytes()));
        }
        assert_eq!(read_xattrs(&many), want);
    }
}
