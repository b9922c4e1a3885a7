//! Check: verifies a repository's structure and, optionally, every byte.
//!
//! Structure: every index file opens; every indexed pack exists with the indexed size; every
//! recovery point opens; every tree of every recovery point reads and decodes; every chunk a
//! file names is indexed. With `read_data`, every (or a subset of) pack is downloaded, its
//! name (BLAKE3 of its bytes) verified, its header decrypted and every blob decrypted and
//! checked against its ID. Each damaged object is named with the files it affects.
//!
//! Memory is bounded as prune's is (docs/design/prune-at-scale.md, step 5): see [`run`].

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use ferry_format::pack;
use ferry_format::tree::NodeKind;
use ferry_format::{BlobId, BlobKind, PackId};

use crate::blobset::BlobSet;
use crate::{tree_walk, Repository, UnitDecoder};

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

/// What check knows of one indexed pack (kept in memory: about 50 bytes a pack; the blobs, tens
/// of millions at the design scale, go to an on-disk set).
struct IndexedPack {
    size: u64,
    in_store: bool,
    read: bool,
}

/// Runs the check.
///
/// Memory grows with the number of packs, not of blobs: the index files are read one at a
/// time, twice when a pack must be read or is damaged (its blobs come from the second pass),
/// and the set of indexed blobs is a scratch database in the cache folder (`BlobSet`).
pub fn run(repo: &Repository, opts: &CheckOptions) -> crate::Result<CheckReport> {
    let mut report = CheckReport::default();
    // Index files: each must open. The packs and blobs they list (not the cache's view).
    let mut indexed_blobs = BlobSet::new_in(repo.cache_dir())?;
    let mut packs: HashMap<PackId, IndexedPack> = HashMap::new();
    let index_files = repo.list_index_files()?;
    for id in &index_files {
        report.index_files += 1;
        match repo.read_index_file(id) {
            Ok(f) => {
                for p in f.packs {
                    // A pack a vault deleted (no kept recovery point used it) is not missing.
                    if repo.is_pack_deleted(&p.id)? {
                        continue;
                    }
                    for b in &p.blobs {
                        indexed_blobs.insert(b.kind, &b.id)?;
                    }
                    packs.insert(p.id, IndexedPack { size: p.size, in_store: false, read: false });
                }
            }
            Err(e) => report.damage.push(Damage { object: format!("index file {id}"), problem: format!("{e:#}"), affected: vec![] }),
        }
    }
    indexed_blobs.flush()?;
    // Packs in the store, against the index.
    let mut bad_packs: HashMap<PackId, String> = HashMap::new();
    repo.for_each_stored_pack(|id, size| {
        match packs.get_mut(&id) {
            None => report.unindexed_packs += 1,
            Some(p) => {
                p.in_store = true;
                if p.size != size {
                    bad_packs.insert(id, format!("size {size} differs from the indexed {}", p.size));
                }
            }
        }
        Ok(())
    })?;
    for (id, p) in &packs {
        if !p.in_store {
            bad_packs.insert(*id, "missing from the store".to_string());
        }
    }
    report.packs = packs.len() as u64;
    let mut ordered_bad: Vec<(&PackId, &String)> = bad_packs.iter().collect();
    ordered_bad.sort();
    for (id, problem) in ordered_bad {
        report.damage.push(Damage { object: format!("pack {id}"), problem: problem.clone(), affected: vec![] });
    }
    // The packs to read in full.
    let mut to_read: Vec<PackId> = Vec::new();
    if opts.read_data_percent > 0.0 {
        to_read = packs.keys().filter(|p| !bad_packs.contains_key(p)).copied().collect();
        to_read.sort();
        let take = ((to_read.len() as f64) * opts.read_data_percent.min(100.0) / 100.0).ceil() as usize;
        if take < to_read.len() {
            // A random subset, so repeated partial checks cover everything over time.
            let start = (u64::from_le_bytes(ferry_crypto::random_bytes()) % to_read.len() as u64) as usize;
            to_read.rotate_left(start);
            to_read.truncate(take);
        }
    }
    let to_read: HashSet<PackId> = to_read.into_iter().collect();
    // Second pass over the index, for the blobs of the damaged packs and of those to read.
    let mut bad_blobs: HashMap<(BlobKind, BlobId), String> = HashMap::new();
    if !bad_packs.is_empty() || !to_read.is_empty() {
        for id in &index_files {
            let Ok(f) = repo.read_index_file(id) else { continue }; // reported above
            for p in f.packs {
                if let Some(problem) = bad_packs.get(&p.id) {
                    for b in &p.blobs {
                        bad_blobs.insert((b.kind, b.id), format!("pack {} {problem}", p.id.short()));
                    }
                    continue;
                }
                let Some(state) = packs.get_mut(&p.id).filter(|s| !s.read && to_read.contains(&p.id)) else { continue };
                state.read = true;
                report.packs_read += 1;
                if let Some((problem, blobs)) = read_pack(repo, &p.id, &p.blobs) {
                    report.damage.push(Damage { object: format!("pack {}", p.id), problem: problem.clone(), affected: vec![] });
                    for b in blobs {
                        bad_blobs.insert(b, format!("pack {} {problem}", p.id.short()));
                    }
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
        let root_ok = check_tree(repo, &rp.tree, &indexed_blobs, &bad_blobs, &mut report, &format!("recovery point {short}"))?;
        if !root_ok {
            continue;
        }
        let r = tree_walk::walk(repo, &rp.tree, &mut |path, node| {
            if node.kind == NodeKind::Dir {
                let Some(sub) = node.subtree else {
                    return Ok(false);
                };
                let first = seen_trees.insert(sub);
                let ok = if first {
                    check_tree(repo, &sub, &indexed_blobs, &bad_blobs, &mut report, &format!("{short}:{}", path.display()))?
                } else {
                    true
                };
                return Ok(ok);
            }
            for c in &node.content {
                let key = (BlobKind::Data, *c);
                let problem = if let Some(p) = bad_blobs.get(&key) {
                    Some(p.clone())
                } else if !indexed_blobs.contains(key.0, &key.1)? {
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
    indexed: &BlobSet,
    bad: &HashMap<(BlobKind, BlobId), String>,
    report: &mut CheckReport,
    context: &str,
) -> Result<bool> {
    let problem = if let Some(p) = bad.get(&(BlobKind::Tree, *id)) {
        Some(p.clone())
    } else if !indexed.contains(BlobKind::Tree, id)? {
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
            Ok(false)
        }
        None => Ok(true),
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
            let Ok(salt) = pack::parse_preamble(&bytes) else {
                return Some((format!("{e}"), all()));
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
