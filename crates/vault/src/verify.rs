//! What the vault accepts into a machine's repository, checked before anything is stored.
//!
//! Packs, index files and recovery points are named by the BLAKE3 of their bytes
//! (docs/format.md), so the vault checks every one without a key. The few small mutable or
//! plain objects (config, key files, locks, mark records) are capped in size.

/// Largest object accepted (packs are 8 MiB by default; the format allows up to 1 GiB, but a
/// vault that buffers a whole object per upload caps it lower).
pub const MAX_OBJECT: usize = 256 * 1024 * 1024;
/// Largest small object (config, key file, lock, mark record).
pub const MAX_SMALL: usize = 1024 * 1024;

/// How an object may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Only created, never replaced.
    Once,
    /// May be replaced (locks).
    Replace,
}

/// Checks an upload to `key` (relative to the machine's repository). Returns how it may be
/// written, or what is wrong with it.
pub fn check_upload(key: &str, bytes: &[u8]) -> Result<Write, String> {
    ferry_store::validate_key("put", key).map_err(|e| e.message)?;
    let named = |hex_name: &str| -> Result<(), String> {
        let actual = blake3::hash(bytes).to_hex();
        if actual.as_str() == hex_name {
            Ok(())
        } else {
            Err(format!("the object's bytes hash to {actual}, not to its name {hex_name}: damaged in transit or not a Ferry object"))
        }
    };
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["data", dir, name] if is_id(name) && name.starts_with(dir) && dir.len() == 2 => {
            if bytes.len() > MAX_OBJECT {
                return Err(format!("pack of {} bytes exceeds the vault's limit of {MAX_OBJECT}", bytes.len()));
            }
            if !bytes.starts_with(b"FRYPAK") {
                return Err("not a Ferry pack (no FRYPAK magic)".into());
            }
            named(name).map(|()| Write::Once)
        }
        ["index" | "recovery-points", name] if is_id(name) => {
            if bytes.len() > MAX_OBJECT {
                return Err(format!("object of {} bytes exceeds the vault's limit of {MAX_OBJECT}", bytes.len()));
            }
            named(name).map(|()| Write::Once)
        }
        ["packlists", name] if is_id(name) => {
            // The vault acts on pack lists (retention), so it reads every one it accepts.
            let id = ferry_format::RecoveryPointId::from_hex(name).ok_or("bad recovery point ID")?;
            ferry_format::packlist::PackList::decode(bytes, &id).map_err(|e| e.to_string())?;
            Ok(Write::Once)
        }
        ["config"] | ["keys" | "gc", _] => small(bytes).map(|()| Write::Once),
        ["locks", _] => small(bytes).map(|()| Write::Replace),
        _ => Err(format!("{key:?} is not an object a Ferry repository has")),
    }
}

fn small(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() > MAX_SMALL {
        return Err(format!("object of {} bytes is larger than {MAX_SMALL} bytes", bytes.len()));
    }
    Ok(())
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_objects_must_hash_to_their_name() {
        let pack = b"FRYPAK\x01\x00rest of a pack".to_vec();
        let id = blake3::hash(&pack).to_hex().to_string();
        assert_eq!(check_upload(&format!("data/{}/{id}", &id[..2]), &pack), Ok(Write::Once));
        let mut damaged = pack.clone();
        damaged[10] ^= 1;
        assert!(check_upload(&format!("data/{}/{id}", &id[..2]), &damaged).unwrap_err().contains("hash to"));
        assert!(check_upload(&format!("data/00/{id}"), &pack).is_err() || id.starts_with("00"), "wrong folder");
        let not_a_pack = b"hello".to_vec();
        let nid = blake3::hash(&not_a_pack).to_hex().to_string();
        assert!(check_upload(&format!("data/{}/{nid}", &nid[..2]), &not_a_pack).unwrap_err().contains("magic"));
        assert_eq!(check_upload(&format!("index/{nid}"), &not_a_pack), Ok(Write::Once));
        assert!(check_upload(&format!("recovery-points/{id}"), &not_a_pack).is_err());
    }

    #[test]
    fn pack_lists_must_parse_and_name_their_recovery_point() {
        use ferry_format::packlist::PackList;
        use ferry_format::RecoveryPointId;
        let rp = RecoveryPointId::from_bytes([7; 32]);
        let list = PackList::new(rp, "2026-11-30T10:00:00Z".into(), "g".into(), vec![]).encode();
        assert_eq!(check_upload(&format!("packlists/{}", rp.to_hex()), &list), Ok(Write::Once));
        let other = RecoveryPointId::from_bytes([8; 32]);
        assert!(check_upload(&format!("packlists/{}", other.to_hex()), &list).is_err(), "named for another recovery point");
        assert!(check_upload(&format!("packlists/{}", rp.to_hex()), b"{}").is_err());
        for vault_only in ["deleted-packs/abc", "deleted/recovery-points/abc", "holds/abc"] {
            assert!(check_upload(vault_only, &list).is_err(), "{vault_only} is written by the vault alone");
        }
    }

    #[test]
    fn small_objects_and_unknown_keys() {
        assert_eq!(check_upload("locks/abc", b"{}"), Ok(Write::Replace));
        assert_eq!(check_upload("config", b"{}"), Ok(Write::Once));
        assert!(check_upload("config", &vec![b' '; MAX_SMALL + 1]).is_err());
        assert!(check_upload("other/thing", b"x").is_err());
        assert!(check_upload("../etc/passwd", b"x").is_err());
    }
}
