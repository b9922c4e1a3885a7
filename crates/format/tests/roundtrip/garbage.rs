//! "Garbage never panics": every decoder of outside data fed random bytes and damaged valid
//! encodings (a flipped bit, a truncation, appended bytes), also inside the encryption.

use super::*;

// ---- garbage never panics -----------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn index_file_garbage(bytes in vec(any::<u8>(), 0..400), named in any::<bool>()) {
        let m = master();
        let id = if named { IndexId::from_bytes(ferry_crypto::content_hash(&bytes)) } else { IndexId::from_bytes([0; 32]) };
        prop_assert!(IndexFile::open(&m, &id, &bytes).is_err());
    }

    #[test]
    fn index_file_damaged(f in index_file(), d in damage(), inside in any::<bool>()) {
        let m = master();
        let bytes = if inside {
            // Damage the plaintext body, then seal it properly: the decoder sees bad postcard.
            let body = apply(&postcard::to_allocvec(&f).unwrap(), &d);
            seal_object(&m.meta_key(), ObjectType::Index, &body)
        } else {
            apply(&f.seal(&m).1, &d)
        };
        let id = IndexId::from_bytes(ferry_crypto::content_hash(&bytes));
        let opened = IndexFile::open(&m, &id, &bytes);
        if !inside {
            prop_assert!(opened.is_err());
        }
    }

    #[test]
    fn index_file_garbage_body(body in vec(any::<u8>(), 0..400)) {
        let m = master();
        let bytes = seal_object(&m.meta_key(), ObjectType::Index, &body);
        let _ = IndexFile::open(&m, &IndexId::from_bytes(ferry_crypto::content_hash(&bytes)), &bytes);
    }

    #[test]
    fn recovery_point_garbage(bytes in vec(any::<u8>(), 0..400), named in any::<bool>()) {
        let m = master();
        let id = if named { RecoveryPointId::from_bytes(ferry_crypto::content_hash(&bytes)) } else { RecoveryPointId::from_bytes([0; 32]) };
        prop_assert!(RecoveryPoint::open(&m, &id, &bytes).is_err());
    }

    #[test]
    fn recovery_point_damaged(rp in recovery_point(), d in damage(), inside in any::<bool>()) {
        let m = master();
        let bytes = if inside {
            let body = apply(&serde_json::to_vec(&rp).unwrap(), &d);
            seal_object(&m.meta_key(), ObjectType::RecoveryPoint, &body)
        } else {
            apply(&rp.seal(&m).1, &d)
        };
        let opened = RecoveryPoint::open(&m, &RecoveryPointId::from_bytes(ferry_crypto::content_hash(&bytes)), &bytes);
        if !inside {
            prop_assert!(opened.is_err());
        }
    }

    #[test]
    fn recovery_point_garbage_body(body in prop_oneof![vec(any::<u8>(), 0..400), any::<String>().prop_map(String::into_bytes)]) {
        let m = master();
        let bytes = seal_object(&m.meta_key(), ObjectType::RecoveryPoint, &body);
        let _ = RecoveryPoint::open(&m, &RecoveryPointId::from_bytes(ferry_crypto::content_hash(&bytes)), &bytes);
    }

    #[test]
    fn config_garbage(bytes in vec(any::<u8>(), 0..400)) {
        let _ = Config::from_json(&bytes);
    }

    #[test]
    fn config_damaged(c in config(), d in damage()) {
        let _ = Config::from_json(&apply(&c.to_json(), &d));
    }

    #[test]
    fn config_out_of_range_values(
        c in config(),
        min in any::<u32>(),
        avg in any::<u32>(),
        max in any::<u32>(),
        level in any::<i32>(),
        pack_size in any::<u32>(),
        version in any::<u64>(),
    ) {
        // Structurally valid JSON with hostile numbers: validated, never trusted.
        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        v["chunker"] = serde_json::json!({ "min_size": min, "avg_size": avg, "max_size": max });
        v["compression_level"] = level.into();
        v["pack_size"] = pack_size.into();
        v["version"] = version.into();
        if let Ok(parsed) = Config::from_json(&serde_json::to_vec(&v).unwrap()) {
            prop_assert!(parsed.chunker.validate().is_ok());
            // A config that parses must make a working chunker.
            let _ = Chunker::new(parsed.chunker, 1).cut(&[0u8; 100]);
        }
    }

    #[test]
    fn tree_garbage(mut bytes in vec(any::<u8>(), 0..400), header in any::<bool>()) {
        if header && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(b"FRYTRE\x01\x00");
        }
        let _ = Tree::decode(&bytes);
    }

    #[test]
    fn tree_damaged(nodes in vec(node(), 0..6), d in damage()) {
        let encoded = Tree { nodes }.encode();
        if let Ok(t) = Tree::decode(&apply(&encoded, &d)) {
            // Whatever decodes still has only safe names.
            for n in &t.nodes {
                prop_assert!(!n.name.is_empty() && n.name != b"." && n.name != b".." && !n.name.contains(&b'/') && !n.name.contains(&0));
            }
        }
    }

    #[test]
    fn tree_unsafe_names_are_refused(mut nodes in vec(node(), 1..4), pick in any::<usize>(), bad in prop_oneof![
        Just(b"".to_vec()), Just(b".".to_vec()), Just(b"..".to_vec()),
        (node_name(), node_name()).prop_map(|(a, b)| [a, b"/".to_vec(), b].concat()),
        (node_name(), node_name()).prop_map(|(a, b)| [a, vec![0], b].concat()),
    ]) {
        let i = pick % nodes.len();
        nodes[i].name = bad;
        let encoded = Tree { nodes }.encode();
        prop_assert!(Tree::decode(&encoded).is_err());
    }

    #[test]
    fn pack_garbage(bytes in vec(any::<u8>(), 0..400), named in any::<bool>(), framed in any::<bool>()) {
        let m = master();
        let mut bytes = bytes;
        if framed && bytes.len() >= pack::PREAMBLE_LEN + pack::TRAILER_LEN {
            // Valid preamble and end marker, random header length: reach the header checks.
            bytes[..8].copy_from_slice(b"FRYPAK\x01\x00");
            let n = bytes.len();
            bytes[n - 4..].copy_from_slice(b"FEND");
        }
        let id = if named { PackId::from_bytes(ferry_crypto::content_hash(&bytes)) } else { PackId::from_bytes([0; 32]) };
        prop_assert!(pack::read_pack(&m, &id, &bytes).is_err());
    }

    #[test]
    fn pack_damaged(blobs in vec((kind(), vec(any::<u8>(), 0..300)), 0..4), d in damage()) {
        let m = master();
        let idk = m.id_key();
        let mut w = PackWriter::new(&m);
        for (kind, plain) in &blobs {
            w.add(*kind, BlobId::from_bytes(idk.hash(plain)), plain, false, plain.len() as u32);
        }
        let bytes = apply(&w.finish().bytes, &d);
        let _ = pack::read_pack(&m, &PackId::from_bytes(ferry_crypto::content_hash(&bytes)), &bytes);
    }

    #[test]
    fn pack_header_garbage(salt in any::<[u8; 16]>(), area in vec(any::<u8>(), 0..200), header in prop_oneof![
        vec(any::<u8>(), 0..300),
        (vec(pack_entry(), 0..6), damage()).prop_map(|(e, d)| apply(&postcard::to_allocvec(&e).unwrap(), &d)),
        vec(pack_entry(), 0..6).prop_map(|e| postcard::to_allocvec(&e).unwrap()),
    ]) {
        // A header sealed with the right key but holding anything: entries must be checked.
        let m = master();
        let bytes = pack_with_header(&m, salt, &area, &header);
        let id = PackId::from_bytes(ferry_crypto::content_hash(&bytes));
        if let Ok((_, entries)) = pack::read_pack(&m, &id, &bytes) {
            let blob_end = pack::PREAMBLE_LEN + area.len();
            for e in entries {
                prop_assert!(e.offset as usize >= pack::PREAMBLE_LEN && e.offset as usize + e.length as usize <= blob_end);
                prop_assert!(e.length as usize >= blob::OVERHEAD);
            }
        }
    }

    #[test]
    fn pack_trailer_and_header_garbage(
        trailer in vec(any::<u8>(), 0..12),
        sealed in vec(any::<u8>(), 0..200),
        salt in any::<[u8; 16]>(),
        pack_len in any::<u64>(),
    ) {
        let m = master();
        if let Ok(len) = pack::parse_trailer(&trailer, pack_len) {
            prop_assert!(len <= pack::MAX_HEADER_LEN && u64::from(len) + (pack::PREAMBLE_LEN + pack::TRAILER_LEN) as u64 <= pack_len);
        }
        let _ = pack::parse_preamble(&sealed);
        // Callers pass the length of the whole pack, which holds the header and the trailer.
        let pack_len = pack_len.max((sealed.len() + pack::PREAMBLE_LEN + pack::TRAILER_LEN) as u64);
        prop_assert!(pack::open_header(&m, &salt, &sealed, pack_len).is_err());
    }

    #[test]
    fn blob_garbage(
        stored in vec(any::<u8>(), 0..300),
        compressed in any::<bool>(),
        raw_len in prop_oneof![0u32..100_000, Just(blob::MAX_BLOB_LEN), Just(blob::MAX_BLOB_LEN + 1), Just(u32::MAX)],
        k in kind(),
        id in blob_id(),
    ) {
        let m = master();
        prop_assert!(blob::open(&m.pack_key(&[1; 16]), &m.id_key(), k, &id, &stored, compressed, raw_len).is_err());
    }

    #[test]
    fn blob_garbage_payload(payload in prop_oneof![
        vec(any::<u8>(), 0..300),
        (plaintext(), damage()).prop_map(|(p, d)| apply(&blob::compress(&p, 3).0, &d)),
    ], compressed in any::<bool>(), raw_len in prop_oneof![0u32..100_000, Just(blob::MAX_BLOB_LEN + 1)], seq in any::<u32>()) {
        // Sealed with the right key but holding garbage: decompression and the ID check catch it.
        let m = master();
        let key = m.pack_key(&[1; 16]);
        let id = BlobId::from_bytes([3; 32]);
        let stored = blob::seal(&key, seq, BlobKind::Data, &id, &payload);
        prop_assert!(blob::open(&key, &m.id_key(), BlobKind::Data, &id, &stored, compressed, raw_len).is_err());
    }

    #[test]
    fn blob_damaged(plain in plaintext(), d in damage()) {
        let m = master();
        let key = m.pack_key(&[1; 16]);
        let idk = m.id_key();
        let id = BlobId::from_bytes(idk.hash(&plain));
        let (payload, compressed) = blob::compress(&plain, 3);
        let stored = apply(&blob::seal(&key, 0, BlobKind::Data, &id, &payload), &d);
        prop_assert!(blob::open(&key, &idk, BlobKind::Data, &id, &stored, compressed, plain.len() as u32).is_err());
    }

    #[test]
    fn envelope_garbage(bytes in vec(any::<u8>(), 0..300), d in damage(), body in vec(any::<u8>(), 0..100)) {
        let k = AeadKey::new(&[5; 32]);
        prop_assert!(open_object(&k, ObjectType::Index, &bytes).is_err());
        let damaged = apply(&seal_object(&k, ObjectType::RecoveryPoint, &body), &d);
        prop_assert!(open_object(&k, ObjectType::RecoveryPoint, &damaged).is_err());
    }
}
