//! Check: verifies a repository's structure and, optionally, every byte.
//!
//! Structure: every index file opens; every indexed pack exists with the indexed size; every
//! recovery point opens; every tree of every recovery point reads and decodes; every chunk a
//! file names is indexed. With `read_data`, every (or a subset of) pack is downloaded, its
//! name (BLAKE3 of its bytes) verified, its header decrypted and every blob decrypted and
//! checked against its ID. Each damaged object is named with the files it affects.

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::Result;
use ferry_format::pack;
use ferry_format::tree::NodeKind;
use ferry_format::{BlobId, BlobKind, PackId};

use crate::{walk, Repository, UnitDecoder};

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Percentage of packs to read fully (0 = structure only, 100 = `--read-data`).
    pub read_data_percent: f64,
}

/// One damaged object and what it affects.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    /// "pack 3fa2…", "index file …", "recovery point …", "tree …", "chunk …".
    pub object: String,
    pub problem: String,
    /// Files affected, as `RP-short:/path`.
    pub affected: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub packs: u64,
    pub packs_read: u64,
    pub index_files: u64,
    pub recovery_points: u64,
    pub trees: u64,
    /// Packs present in the store but in no index (left by an interrupted backup; prune removes them).
    pub unindexed_packs: u64,
    pub damage: Vec<Damage>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Runs the check.
pub fn run(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // Index files: each must open. Build the pack -> blobs view from them (not from the cache).
    let mut indexed: HashMap<PackId, (u64, Vec<pack::PackEntry>)> = HashMap::new();
    for id in repo.list_index_files()? {
        report.index_files += 1;
        match repo.read_index_file(&id) {
            Ok(f) => {
                for p in f.packs {
                    // A pack a vault deleted (no kept recovery point used it) is not missing.
                    if !repo.is_pack_deleted(&p.id)? {
                        indexed.insert(p.id, (p.size, p.blobs));
                    }
                }
            }
            Err(e) => report.damage.push(Damage { object: format!("index file {}", id), problem: format!("{e:#}"), affected: vec![] }),
        }
    }
    let blob_pack: HashMap<(BlobKind, BlobId), PackId> =
        indexed.iter().flat_map(|(p, (_, bs))| bs.iter().map(move |b| ((b.kind, b.id), *p))).collect();
    // Packs in the store.
    let mut stored: HashMap<PackId, u64> = HashMap::new();
    repo.for_each_stored_pack(|id, size| {
        stored.insert(id, size);
        Ok(())
    })?;
    report.packs = indexed.len() as u64;
    report.unindexed_packs = stored.keys().filter(|p| !indexed.contains_key(p)).count() as u64;
    let mut bad_blobs: HashMap<(BlobKind, BlobId), String> = HashMap::new();
    let mut bad_packs: BTreeSet<PackId> = BTreeSet::new();
    for (id, (size, blobs)) in &indexed {
        let problem = match stored.get(id) {
            None => Some("missing from the store".to_string()),
            Some(s) if s != size => Some(format!("size {s} differs from the indexed {size}")),
            _ => None,
        };
        if let Some(p) = problem {
            bad_packs.insert(*id);
            for b in blobs {
                bad_blobs.insert((b.kind, b.id), format!("pack {} {p}", id.short()));
            }
            report.damage.push(Damage { object: format!("pack {id}"), problem: p, affected: vec![] });
        }
    }
    // Read data.
    if opts.read_data_percent > 0.0 {
        let mut ids: Vec<&PackId> = indexed.keys().filter(|p| !bad_packs.contains(p)).collect();
        ids.sort();
        let take = ((ids.len() as f64) * opts.read_data_percent.min(100.0) / 100.0).ceil() as usize;
        if take < ids.len() {
            // A random subset, so repeated partial checks cover everything over time.
            let start = (u64::from_le_bytes(ferry_crypto::random_bytes()) % ids.len() as u64) as usize;
            ids.rotate_left(start);
            ids.truncate(take);
        }
        for id in ids {
            report.packs_read += 1;
            if let Some(p) = read_pack(repo, id, &indexed[id].1) {
                report.damage.push(Damage { object: format!("pack {id}"), problem: p.0.clone(), affected: vec![] });
                for b in p.1 {
                    bad_blobs.insert(b, format!("pack {} {}", id.short(), p.0));
                }
            }
        }
    }
    // Recovery points and trees; attribute damage to files.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    let mut affected: HashMap<String, Vec<String>> = HashMap::new();
    let (points, damaged_points) = repo.recovery_points_checked()?;
    report.recovery_points = (points.len() + damaged_points.len()) as u64;
    for (id, problem) in damaged_points {
        report.damage.push(Damage {
            object: format!("recovery point {id}"),
            problem,
            affected: vec!["every file of this recovery point".into()],
        });
    }
    for (rp_id, rp) in &points {
        let short = rp_id.short();
        let root_ok = check_tree(repo, &rp.tree, &blob_pack, &bad_blobs, &mut report, &format!("recovery point {short}"));
        if !root_ok {
            continue;
        }
        let r = walk::walk(repo, &rp.tree, &mut |path, node| {
            if node.kind == NodeKind::Dir {
                let Some(sub) = node.subtree else {
                    return Ok(false);
                };
                let first = seen_trees.insert(sub);
                let ok = if first {
                    check_tree(repo, &sub, &blob_pack, &bad_blobs, &mut report, &format!("{short}:{}", path.display()))
                } else {
                    true
                };
                return Ok(ok);
            }
            for c in &node.content {
                let key = (BlobKind::Data, *c);
                let problem = if let Some(p) = bad_blobs.get(&key) {
                    Some(p.clone())
                } else if !blob_pack.contains_key(&key) {
                    Some("not in any index".to_string())
                } else {
                    None
                };
                if let Some(p) = problem {
                    affected.entry(format!("chunk {c}: {p}")).or_default().push(format!("{short}:{}", path.display()));
                }
            }
            Ok(true)
        });
        if let Err(e) = r {
            report.damage.push(Damage { object: format!("recovery point {rp_id}"), problem: format!("{e:#}"), affected: vec![] });
        }
    }
    report.trees = seen_trees.len() as u64;
    let mut chunk_damage: Vec<Damage> = affected
        .into_iter()
        .map(|(k, files)| {
            let (obj, problem) = k.split_once(": ").map(|(a, b)| (a.to_string(), b.to_string())).unwrap_or((k.clone(), String::new()));
            Damage { object: obj, problem, affected: files }
        })
        .collect();
    chunk_damage.sort_by(|a, b| a.object.cmp(&b.object));
    report.damage.extend(chunk_damage);
    Ok(report)
}

/// Checks that a tree is indexed, undamaged and decodes; records damage otherwise.
fn check_tree(
    repo: &Repository,
    id: &BlobId,
    blob_pack: &HashMap<(BlobKind, BlobId), PackId>,
    bad: &HashMap<(BlobKind, BlobId), String>,
    report: &mut CheckReport,
    context: &str,
) -> bool {
    let problem = if let Some(p) = bad.get(&(BlobKind::Tree, *id)) {
        Some(p.clone())
    } else if !blob_pack.contains_key(&(BlobKind::Tree, *id)) {
        Some("not in any index".into())
    } else {
        repo.load_tree(id).err().map(|e| format!("{e:#}"))
    };
    match problem {
        Some(p) => {
            report.damage.push(Damage {
                object: format!("tree {id}"),
                problem: p,
                affected: vec![format!("{context} and everything below it")],
            });
            false
        }
        None => true,
    }
}

/// Reads a whole pack and checks everything in it. Returns the problem and the damaged blobs.
fn read_pack(repo: &Repository, id: &PackId, indexed: &[pack::PackEntry]) -> Option<(String, Vec<(BlobKind, BlobId)>)> {
    let all = || indexed.iter().map(|b| (b.kind, b.id)).collect::<Vec<_>>();
    let bytes = match repo.read_pack(id) {
        Ok(b) => b,
        Err(e) => return Some((format!("{e:#}"), all())),
    };
    let (salt, header) = match pack::read_pack(repo.master(), id, &bytes) {
        Ok(x) => x,
        Err(e) => {
            // The pack's name no longer matches its bytes (or its header is damaged): each
            // blob may still be intact, so test them one by one against the index.
            let salt = match pack::parse_preamble(&bytes) {
                Ok(s) => s,
                Err(_) => return Some((format!("{e}"), all())),
            };
            let mut decoder = UnitDecoder::new(repo);
            let bad: Vec<_> =
                indexed.iter().filter(|b| open_one(&mut decoder, &salt, &bytes, b).is_err()).map(|b| (b.kind, b.id)).collect();
            return Some((format!("{e}"), bad));
        }
    };
    let mut bad = Vec::new();
    let mut decoder = UnitDecoder::new(repo);
    for b in indexed {
        if !header.contains(b) || open_one(&mut decoder, &salt, &bytes, b).is_err() {
            bad.push((b.kind, b.id));
        }
    }
    if bad.is_empty() {
        None
    } else {
        Some((format!("{} blob(s) damaged", bad.len()), bad))
    }
}

/// Decodes one blob of a pack held in memory (`indexed` entries are in pack order, so the
/// members of a bundle come one after another and their unit is decoded once).
fn open_one(decoder: &mut UnitDecoder<'_>, salt: &[u8; 16], bytes: &[u8], b: &pack::PackEntry) -> Result<()> {
    let (s, e) = (b.offset as usize, b.offset as usize + b.length as usize);
    let Some(stored) = bytes.get(s..e) else { anyhow::bail!("blob lies past the end of the pack") };
    decoder.blob(&crate::cache::BlobLocation::of(PackId::from_bytes([0; 32]), b), salt, stored)?;
    Ok(())
}
