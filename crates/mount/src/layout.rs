//! The made-up part of the mount, from the recovery-point list:
//!
//! ```text
//! MOUNTPOINT/
//!   recovery-points/<UTC time>_<ID prefix>/   each recovery point's root: its backed-up paths
//!   latest -> recovery-points/<newest>
//!   hosts/<host>/<UTC time>_<ID prefix> -> ../../recovery-points/<same>
//!   tags/<tag>/<UTC time>_<ID prefix>   -> ../../recovery-points/<same>
//! ```

use fuser::FileType;

use crate::inodes::{Inode, Inodes, Key, What, HOSTS, LATEST, POINTS, ROOT, TAGS};
use crate::points::{Point, Points};

/// One folder entry: inode, kind, name.
pub type Entry = (u64, FileType, Vec<u8>);

/// The inode of recovery point `p`'s folder.
pub fn point_ino(inodes: &Inodes, p: &Point) -> u64 {
    inodes.keyed(Key::Point(p.id), POINTS, &p.name, || {
        let time_ns = chrono::DateTime::parse_from_rfc3339(&p.rp.time).ok().and_then(|t| t.timestamp_nanos_opt()).unwrap_or(0);
        What::PointRoot { tree: p.rp.tree, time_ns }
    })
}

fn group_ino(inodes: &Inodes, tags: bool, name: &[u8]) -> u64 {
    let parent = if tags { TAGS } else { HOSTS };
    inodes.keyed(Key::Group { tags, name: name.to_vec() }, parent, name, || What::Group { tags })
}

fn link_ino(inodes: &Inodes, group: u64, p: &Point) -> u64 {
    inodes.keyed(Key::Link { group, point: p.name.clone() }, group, &p.name, || What::PointLink)
}

/// The entries of a made-up folder (`None`: `ino` is not one).
pub fn entries(points: &Points, inodes: &Inodes, ino: u64, dir: &Inode) -> Option<Vec<Entry>> {
    let out = match (&dir.what, ino) {
        (What::Fixed, ROOT) => {
            let mut v = vec![
                (POINTS, FileType::Directory, b"recovery-points".to_vec()),
                (HOSTS, FileType::Directory, b"hosts".to_vec()),
                (TAGS, FileType::Directory, b"tags".to_vec()),
            ];
            if points.latest().is_some() {
                v.push((LATEST, FileType::Symlink, b"latest".to_vec()));
            }
            v
        }
        (What::Fixed, POINTS) => points.list.iter().map(|p| (point_ino(inodes, p), FileType::Directory, p.name.clone())).collect(),
        (What::Fixed, HOSTS | TAGS) => {
            let tags = ino == TAGS;
            points.groups(tags).into_keys().map(|name| (group_ino(inodes, tags, &name), FileType::Directory, name)).collect()
        }
        (What::Group { tags }, _) => points
            .groups(*tags)
            .remove(dir.name())
            .unwrap_or_default()
            .into_iter()
            .map(|p| (link_ino(inodes, ino, p), FileType::Symlink, p.name.clone()))
            .collect(),
        _ => return None,
    };
    Some(out)
}

/// Where a made-up link points (`None`: not a link, or `latest` with no recovery point).
pub fn link_target(points: &Points, dir: &Inode) -> Option<Vec<u8>> {
    match dir.what {
        What::Latest => points.latest().map(|p| [&b"recovery-points/"[..], &p.name].concat()),
        What::PointLink => Some([&b"../../recovery-points/"[..], dir.name()].concat()),
        _ => None,
    }
}
