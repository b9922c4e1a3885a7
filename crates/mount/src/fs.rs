//! The FUSE file system: the kernel's requests answered from the inode table, the
//! recovery-point list and the content reader. Read-only: every request that would change
//! something is refused by the kernel (the mount is `ro`) or here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_format::tree::NodeKind;
use ferry_repo::Repository;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, OpenAccMode, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::attr::{self, Owner};
use crate::content::{OpenFile, Reader};
use crate::inodes::{Inode, Inodes, What, POINTS};
use crate::layout;
use crate::points::Points;

/// How long the kernel may keep what it learnt of a recovery point's entries: they never change.
const TTL_TREE: Duration = Duration::from_hours(1);
/// ... and of the made-up folders and links, which change when recovery points come and go.
const TTL_MADE_UP: Duration = Duration::from_secs(1);

/// The file system's state, shared by the FUSE threads.
#[derive(Debug)]
pub struct FerryFs {
    repo: Arc<Repository>,
    reader: Reader,
    inodes: Inodes,
    points: Mutex<Points>,
    open: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_fh: AtomicU64,
    owner: Owner,
}

impl FerryFs {
    /// `points` is already read (the mount shows its recovery points from the start).
    pub fn new(repo: Arc<Repository>, points: Points, cache_bytes: usize, owner: Owner) -> Self {
        let reader = Reader::new(repo.clone(), cache_bytes);
        FerryFs {
            repo,
            reader,
            inodes: Inodes::new(),
            points: Mutex::new(points),
            open: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            owner,
        }
    }

    /// The recovery-point list, read again first when `now` or when it is stale.
    fn points(&self, now: bool) -> MutexGuard<'_, Points> {
        let mut p = self.points.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now || p.stale() {
            if let Err(e) = p.refresh(&self.repo) {
                eprintln!("ferry mount: could not read the recovery-point list again (showing the last one): {e:#}");
            }
        }
        p
    }

    fn attr(&self, ino: u64, inode: &Inode) -> Option<(FileAttr, Duration)> {
        Some(match &inode.what {
            What::Node { node, .. } => (attr::of_node(ino, node), TTL_TREE),
            What::PointRoot { time_ns, .. } => (attr::made_up(ino, &self.owner, None, attr::time(*time_ns)), TTL_TREE),
            What::Fixed | What::Group { .. } => (attr::made_up(ino, &self.owner, None, self.owner.since), TTL_MADE_UP),
            What::Latest | What::PointLink => {
                let target = layout::link_target(&self.points(false), inode)?;
                (attr::made_up(ino, &self.owner, Some(target.len()), self.owner.since), TTL_MADE_UP)
            }
        })
    }

    /// The folder `dir`'s entry `name`: looked up in its tree, or in the made-up layout (whose
    /// list is read again first when it is stale).
    fn find(&self, ino: u64, dir: &Inode, name: &[u8]) -> Result<Option<u64>, Errno> {
        if dir.is_tree_folder() {
            return self.inodes.lookup_child(&self.repo, ino, dir, name).map_err(|e| self.folder_error(ino, &e));
        }
        let points = self.points(false);
        Ok(layout::entries(&points, &self.inodes, ino, dir).and_then(|v| v.into_iter().find(|e| e.2 == name).map(|e| e.0)))
    }

    fn folder_error(&self, ino: u64, e: &str) -> Errno {
        eprintln!("ferry mount: cannot read folder {}: {e}", self.inodes.path(ino));
        Errno::EIO
    }

    /// The kind of a tree entry.
    fn kind_of(&self, ino: u64) -> FileType {
        self.inodes.get(ino).map_or(FileType::RegularFile, |i| match &i.what {
            What::Node { node, .. } => attr::kind(node.kind),
            _ => FileType::Directory,
        })
    }

    fn node_xattrs(&self, ino: INodeNo) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inodes
            .get(ino.0)
            .map(|i| match &i.what {
                What::Node { node, .. } => node.xattrs.clone(),
                _ => Vec::new(),
            })
            .unwrap_or_default()
    }
}

/// Answers an extended-attribute request: its size when asked with size 0, else the value.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl Filesystem for FerryFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // More reads in flight at once (read-ahead of several files, several readers).
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.inodes.get(parent.0) else { return reply.error(Errno::ENOENT) };
        match self.find(parent.0, &dir, name.as_bytes()) {
            Ok(Some(ino)) => match self.inodes.get(ino).and_then(|i| self.attr(ino, &i)) {
                Some((a, ttl)) => reply.entry(&ttl, &a, Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inodes.get(ino.0).and_then(|i| self.attr(ino.0, &i)) {
            Some((a, ttl)) => reply.attr(&ttl, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let Some(inode) = self.inodes.get(ino.0) else { return reply.error(Errno::ENOENT) };
        match &inode.what {
            What::Node { node, .. } if node.kind == NodeKind::Symlink => reply.data(&node.target),
            What::Latest | What::PointLink => match layout::link_target(&self.points(false), &inode) {
                Some(t) => reply.data(&t),
                None => reply.error(Errno::ENOENT),
            },
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let Some(inode) = self.inodes.get(ino.0) else { return reply.error(Errno::ENOENT) };
        let What::Node { node, .. } = &inode.what else { return reply.error(Errno::EISDIR) };
        if node.kind != NodeKind::File {
            return reply.error(Errno::EINVAL);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(fh, Arc::new(OpenFile::new(node.clone())));
        // The content never changes: the kernel may keep what it read across opens.
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let file = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&fh.0).cloned();
        let Some(file) = file else { return reply.error(Errno::EBADF) };
        match self.reader.read(&file, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => {
                let object = e.object.map(|o| format!(" (object {o})")).unwrap_or_default();
                eprintln!("ferry mount: cannot read {} at offset {offset}: {}{object}", self.inodes.path(ino.0), e.message);
                reply.error(Errno::EIO);
            }
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: fuser::LockOwner, reply: fuser::ReplyEmpty) {
        // Nothing is ever written. ENOSYS (rather than OK) tells the kernel so for good: it
        // sends no more flushes, one request less for every file closed (`cp -a` of a tree).
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&fh.0);
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(dir) = self.inodes.get(ino.0) else { return reply.error(Errno::ENOENT) };
        let dots = [(ino.0, FileType::Directory, &b"."[..]), (dir.parent, FileType::Directory, &b".."[..])];
        // Entries from `offset` on (the kernel asks again from where its buffer filled up);
        // a tree folder's are not copied first: a large folder is listed in many calls.
        let mut add = |entries: &mut dyn Iterator<Item = (u64, FileType, &[u8])>| {
            for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
                if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                    break;
                }
            }
        };
        if dir.is_tree_folder() {
            match self.inodes.children(&self.repo, ino.0, &dir) {
                Ok(children) => add(&mut dots.into_iter().chain(children.iter().map(|(name, c)| (*c, self.kind_of(*c), &name[..])))),
                Err(e) => return reply.error(self.folder_error(ino.0, &e)),
            }
        } else {
            // Listing recovery-points/ reads the list again (at the listing's start only).
            let points = self.points(ino.0 == POINTS && offset == 0);
            let Some(entries) = layout::entries(&points, &self.inodes, ino.0, &dir) else { return reply.error(Errno::ENOTDIR) };
            drop(points);
            add(&mut dots.into_iter().chain(entries.iter().map(|(c, k, n)| (*c, *k, &n[..]))));
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, self.inodes.count(), 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.node_xattrs(ino).into_iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
            Some((_, value)) => reply_xattr(reply, size, &value),
            None => reply.error(Errno::NO_XATTR),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names: Vec<u8> = self
            .node_xattrs(ino)
            .into_iter()
            .flat_map(|(mut n, _)| {
                n.push(0);
                n
            })
            .collect();
        reply_xattr(reply, size, &names);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: fuser::ReplyEmpty) {
        // Whoever may use the mount (its owner) may read all of it: the mount is read-only and
        // its owner holds the repository's key anyway.
        reply.ok();
    }
}
