//! What `stat` shows: a tree entry's recorded metadata, and the made-up folders' and links'.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_format::tree::{Node, NodeKind};
use fuser::{FileAttr, FileType, INodeNo};

/// The block size `stat` reports: large, so that `cp` and friends read in large pieces.
const BLKSIZE: u32 = 128 << 10;

/// Who owns the made-up entries (folders of the layout, links): the user running the mount.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// The mount's start (the made-up entries' times).
    pub since: SystemTime,
}

pub fn time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

pub fn kind(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// A device number as FUSE carries it (the kernel's 32-bit encoding: 12 bits of major, 20 of
/// minor).
fn rdev32(rdev: u64) -> u32 {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// A tree entry as recorded.
pub fn of_node(ino: u64, n: &Node) -> FileAttr {
    let size = match n.kind {
        NodeKind::Symlink => n.target.len() as u64,
        NodeKind::File => n.size,
        _ => 0,
    };
    let (mtime, ctime) = (time(n.mtime_ns), time(n.ctime_ns));
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime,
        crtime: mtime,
        kind: kind(n.kind),
        perm: (n.mode & 0o7777) as u16,
        nlink: match n.kind {
            NodeKind::Dir => 2,
            _ => n.links.clamp(1, u64::from(u32::MAX)) as u32,
        },
        uid: n.uid,
        gid: n.gid,
        rdev: rdev32(n.rdev),
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// A made-up folder (`time` its modification time) or link (`link` its target's length).
pub fn made_up(ino: u64, owner: &Owner, link: Option<usize>, time: SystemTime) -> FileAttr {
    let (kind, perm, size) = match link {
        Some(len) => (FileType::Symlink, 0o777, len as u64),
        None => (FileType::Directory, 0o555, 0),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: 0,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind,
        perm,
        nlink: if link.is_some() { 1 } else { 2 },
        uid: owner.uid,
        gid: owner.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_in_the_kernels_encoding() {
        // /dev/null is 1:3, /dev/sda1 8:1, a large minor keeps its high bits.
        assert_eq!(rdev32(rustix::fs::makedev(1, 3)), 0x103);
        assert_eq!(rdev32(rustix::fs::makedev(8, 1)), 0x801);
        assert_eq!(rdev32(rustix::fs::makedev(259, 0x12345)), 0x45 | (259 << 8) | (0x12300 << 12));
    }

    #[test]
    fn times_before_1970() {
        assert_eq!(time(-1_500_000_000), UNIX_EPOCH - Duration::from_millis(1500));
        assert_eq!(time(i64::MIN), UNIX_EPOCH.checked_sub(Duration::from_nanos(i64::MIN.unsigned_abs())).unwrap_or(UNIX_EPOCH));
    }
}
