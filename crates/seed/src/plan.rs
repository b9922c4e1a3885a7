//! How many disks of one capacity a seed needs, by the rule [`prepare`](crate::prepare) places
//! objects with: in commit phase order, largest first, each on the first disk of the set with
//! room for it, else on a new disk. For `ferry plan` and for tests that want a set of a given
//! size.

use crate::disk::{base_space, manifest_reserve, space_for};
use crate::{SeedError, SourceObject, MAX_DISK_BYTES};

/// The number of disks of `capacity` bytes (at most [`MAX_DISK_BYTES`] of it used) that
/// `objects` take; [`SeedError::ObjectTooLarge`] if one object does not fit on an empty disk.
pub fn disks_needed(job: &str, objects: &[SourceObject], capacity: u64) -> Result<u32, SeedError> {
    let capacity = capacity.min(MAX_DISK_BYTES);
    let base = base_space(manifest_reserve(job, objects.iter().map(|o| o.key.as_str())));
    let mut order: Vec<&SourceObject> = objects.iter().collect();
    order.sort_by(|a, b| a.phase.cmp(&b.phase).then(b.size.cmp(&a.size)).then(a.key.cmp(&b.key)));
    let mut used: Vec<u64> = Vec::new();
    for o in order {
        let need = space_for(&o.key, o.size);
        if base.saturating_add(need) > capacity {
            return Err(SeedError::ObjectTooLarge { key: o.key.clone(), size: o.size, path: "(planned disk)".into(), capacity });
        }
        match used.iter_mut().find(|u| u.saturating_add(need) <= capacity) {
            Some(u) => *u += need,
            None => used.push(base + need),
        }
    }
    Ok(used.len().max(1) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64, phase: u8) -> SourceObject {
        SourceObject { key: key.into(), size, phase }
    }

    #[test]
    fn first_fit_largest_first() {
        let objects = [obj("data/a", 8 << 20, 0), obj("data/b", 8 << 20, 0), obj("data/c", 3 << 20, 0), obj("index/x", 1000, 1)];
        assert_eq!(disks_needed("j", &objects, 9 << 20).unwrap(), 3, "a | b | c and the index");
        assert_eq!(disks_needed("j", &objects, 12 << 20).unwrap(), 2, "c and the index fit beside a");
        assert_eq!(disks_needed("j", &objects, 20 << 20).unwrap(), 1);
        assert!(matches!(disks_needed("j", &objects, 1 << 20), Err(SeedError::ObjectTooLarge { .. })));
        assert_eq!(disks_needed("j", &[], 1 << 20).unwrap(), 1, "an empty seed still takes a disk for its manifest");
    }
}
