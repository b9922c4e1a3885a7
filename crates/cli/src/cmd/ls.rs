use std::path::Path;

use anyhow::{bail, Result};
use ferry_format::tree::NodeKind;
use ferry_repo::{diff, tree_walk};

use crate::cli::{DiffArgs, Global, LsArgs};
use crate::common;
use crate::Outcome;

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
    }
}

fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice => "chardev",
        NodeKind::BlockDevice => "blockdev",
        NodeKind::Socket => "socket",
    }
}

pub fn ls(g: &Global, a: &LsArgs) -> Result<Outcome> {
    let repo = common::open(g)?;
    let (_, rp) = repo.resolve(&a.recovery_point)?;
    let (root, prefix) = match &a.path {
        None => (rp.tree, Path::new("/").to_path_buf()),
        Some(p) => match tree_walk::find(&repo, &rp.tree, p)? {
            Some((path, n)) if n.kind == NodeKind::Dir => match n.subtree {
                Some(s) => (s, path),
                None => bail!("{} has no contents", p.display()),
            },
            Some(_) => bail!("{} is not a folder", p.display()),
            None => bail!("{} is not in this recovery point", p.display()),
        },
    };
    let mut json = Vec::new();
    tree_walk::walk(&repo, &root, &mut |path, n| {
        let full = prefix.join(path.strip_prefix("/").unwrap_or(path));
        if g.json {
            json.push(serde_json::json!({
                "path": full.to_string_lossy(),
                "type": kind_name(n.kind),
                "size": n.size,
                "mode": n.mode,
                "uid": n.uid,
                "gid": n.gid,
                "mtime_ns": n.mtime_ns,
            }));
        } else if a.long {
            let t = chrono::DateTime::from_timestamp(n.mtime_ns.div_euclid(1_000_000_000), 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            println!("{}{:04o} {:>6} {:>6} {:>12} {} {}", kind_char(n.kind), n.mode, n.uid, n.gid, n.size, t, full.display());
        } else {
            println!("{}", full.display());
        }
        Ok(true)
    })?;
    if g.json {
        common::print_json(&json)?;
    }
    Ok(Outcome::Success)
}

pub fn diff(g: &Global, a: &DiffArgs) -> Result<Outcome> {
    let repo = common::open(g)?;
    let (ia, ra) = repo.resolve(&a.from)?;
    let (ib, rb) = repo.resolve(&a.to)?;
    let changes = diff::diff(&repo, &ra.tree, &rb.tree)?;
    if g.json {
        common::print_json(&serde_json::json!({"from": ia.to_hex(), "to": ib.to_hex(), "changes": changes}))?;
    } else {
        for c in &changes {
            println!("{}  {}", c.change.symbol(), c.path);
        }
        eprintln!("{} change(s) from {} to {}", changes.len(), ia.short(), ib.short());
    }
    Ok(Outcome::Success)
}
