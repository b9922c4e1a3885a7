//! `FERRY-DEVICE/device.json`: which job, machine, set and device number a device is, readable
//! without the key and authenticated with it.

use serde::{Deserialize, Serialize};

use crate::error::DiskFormatError;
use crate::header::Header;
use crate::label::{check_job, parse_hex};
use crate::{DiskKey, MAX_DISKS};

/// The header's `magic` field.
pub const DEVICE_HEADER_MAGIC: &str = "ferry-device";
/// The header version this build writes and the newest it reads.
pub const DEVICE_HEADER_VERSION: u32 = 1;
const HEADER: Header =
    Header { magic: DEVICE_HEADER_MAGIC.as_bytes(), version: DEVICE_HEADER_VERSION, what: "a device header", short: "device header" };
/// Longest header file read (a header is a few hundred bytes).
pub const MAX_DEVICE_HEADER_LEN: u64 = 64 * 1024;
/// The kinds of device: a customer-size disk, or a large appliance.
pub const DEVICE_KINDS: [&str; 2] = ["disk", "box"];
/// Longest machine ID and machine name, in bytes.
const MAX_MACHINE_LEN: usize = 256;
const MAX_TIME_LEN: usize = 64;

/// A device's header. Read without the key ([`read_device_header`](crate::read_device_header));
/// [`DeviceHeader::verify`] checks its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHeader {
    /// The device job's name.
    pub job: String,
    /// The ID of the machine whose agent may write the device.
    pub machine: String,
    /// That machine's name, for people.
    pub machine_name: String,
    /// The device set's random 128-bit ID (one per job: every device of the job carries it).
    pub set_id: [u8; 16],
    /// This device's number, from 1.
    pub device_number: u32,
    /// `"disk"` or `"box"` ([`DEVICE_KINDS`]).
    pub kind: String,
    /// Bytes the agent may use on the device; 0 if not stated (then the file system's free
    /// space alone limits it).
    pub capacity: u64,
    /// When the vault prepared the device (RFC 3339).
    pub prepared: String,
    mac: [u8; 32],
}

/// The JSON form, field by field (serde keeps this order).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderJson {
    magic: String,
    version: u32,
    job: String,
    machine: String,
    machine_name: String,
    set_id: String,
    device_number: u32,
    kind: String,
    capacity: u64,
    prepared: String,
    mac: String,
}

impl DeviceHeader {
    /// A header with its MAC under `key`. The fields are not checked here;
    /// [`prepare_device`](crate::prepare_device) refuses a header that would not decode.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: &DiskKey,
        job: &str,
        machine: &str,
        machine_name: &str,
        set_id: [u8; 16],
        device_number: u32,
        kind: &str,
        capacity: u64,
        prepared: &str,
    ) -> DeviceHeader {
        let mut header = DeviceHeader {
            job: job.to_string(),
            machine: machine.to_string(),
            machine_name: machine_name.to_string(),
            set_id,
            device_number,
            kind: kind.to_string(),
            capacity,
            prepared: prepared.to_string(),
            mac: [0; 32],
        };
        header.mac = header.compute_mac(key);
        header
    }

    /// Does the header's MAC verify under `key`? (Constant-time comparison.)
    pub fn verify(&self, key: &DiskKey) -> bool {
        blake3::Hash::from(self.mac) == blake3::Hash::from(self.compute_mac(key))
    }

    /// `BLAKE3-keyed(BLAKE3-derive("ferry device header v1", disk key), canonical fields)`.
    fn compute_mac(&self, key: &DiskKey) -> [u8; 32] {
        *blake3::keyed_hash(&key.device_header_mac_key(), &self.mac_input()).as_bytes()
    }

    /// `"ferry-device" || u32le(1) || str(job) || str(machine) || str(machine_name) ||
    /// set_id(16) || u32le(device_number) || str(kind) || u64le(capacity) || str(prepared)`,
    /// where `str(s) = u32le(len(s)) || s`.
    fn mac_input(&self) -> Vec<u8> {
        fn put_str(m: &mut Vec<u8>, s: &str) {
            m.extend_from_slice(&(s.len() as u32).to_le_bytes());
            m.extend_from_slice(s.as_bytes());
        }
        let mut m = Vec::with_capacity(96 + self.job.len() + self.machine.len() + self.machine_name.len() + self.prepared.len());
        m.extend_from_slice(DEVICE_HEADER_MAGIC.as_bytes());
        m.extend_from_slice(&DEVICE_HEADER_VERSION.to_le_bytes());
        put_str(&mut m, &self.job);
        put_str(&mut m, &self.machine);
        put_str(&mut m, &self.machine_name);
        m.extend_from_slice(&self.set_id);
        m.extend_from_slice(&self.device_number.to_le_bytes());
        put_str(&mut m, &self.kind);
        m.extend_from_slice(&self.capacity.to_le_bytes());
        put_str(&mut m, &self.prepared);
        m
    }

    /// The header file's bytes: pretty-printed JSON and a newline.
    pub fn encode(&self) -> Vec<u8> {
        let json = HeaderJson {
            magic: DEVICE_HEADER_MAGIC.into(),
            version: DEVICE_HEADER_VERSION,
            job: self.job.clone(),
            machine: self.machine.clone(),
            machine_name: self.machine_name.clone(),
            set_id: hex::encode(self.set_id),
            device_number: self.device_number,
            kind: self.kind.clone(),
            capacity: self.capacity,
            prepared: self.prepared.clone(),
            mac: hex::encode(self.mac),
        };
        let mut out = serde_json::to_vec_pretty(&json).expect("a device header serializes");
        out.push(b'\n');
        out
    }

    /// Parses a header file (untrusted bytes). Checks every field's form, not the MAC.
    pub fn decode(bytes: &[u8]) -> Result<DeviceHeader, DiskFormatError> {
        if bytes.len() as u64 > MAX_DEVICE_HEADER_LEN {
            return Err(DiskFormatError::malformed("device header too large"));
        }
        let json: HeaderJson =
            serde_json::from_slice(bytes).map_err(|e| DiskFormatError::malformed(format!("not a device header: {e}")))?;
        HEADER.check_json(&json.magic, json.version)?;
        let set_id: [u8; 16] = parse_hex(&json.set_id).ok_or_else(|| DiskFormatError::malformed("set_id is not 32 hex digits"))?;
        let mac: [u8; 32] = parse_hex(&json.mac).ok_or_else(|| DiskFormatError::malformed("mac is not 64 hex digits"))?;
        let header = DeviceHeader {
            job: json.job,
            machine: json.machine,
            machine_name: json.machine_name,
            set_id,
            device_number: json.device_number,
            kind: json.kind,
            capacity: json.capacity,
            prepared: json.prepared,
            mac,
        };
        header.check().map_err(DiskFormatError::Malformed)?;
        Ok(header)
    }

    /// The rules of every field but the MAC: job 1..=256 bytes, machine 1..=256 and
    /// machine_name 0..=256 bytes, none with control characters; `1 ≤ device_number ≤ 10`;
    /// kind `disk` or `box`; prepared an RFC 3339 time.
    pub(crate) fn check(&self) -> Result<(), String> {
        check_job(&self.job)?;
        if self.machine.is_empty() || self.machine.len() > MAX_MACHINE_LEN || self.machine.chars().any(char::is_control) {
            return Err(format!("the machine ID must be 1 to {MAX_MACHINE_LEN} bytes without control characters"));
        }
        if self.machine_name.len() > MAX_MACHINE_LEN || self.machine_name.chars().any(char::is_control) {
            return Err(format!("the machine name must be at most {MAX_MACHINE_LEN} bytes without control characters"));
        }
        if self.device_number == 0 || self.device_number > MAX_DISKS {
            return Err(format!("device number {} is not in 1..={MAX_DISKS}", self.device_number));
        }
        if !DEVICE_KINDS.contains(&self.kind.as_str()) {
            return Err(format!("kind {:?} is not \"disk\" or \"box\"", self.kind));
        }
        if self.prepared.is_empty() || self.prepared.len() > MAX_TIME_LEN || chrono::DateTime::parse_from_rfc3339(&self.prepared).is_err() {
            return Err("prepared is not an RFC 3339 time".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> DiskKey {
        DiskKey::from_bytes([7; 32])
    }

    fn fixed() -> DeviceHeader {
        DeviceHeader::new(&key(), "job-1", "m-0123", "web-1", [0xab; 16], 2, "box", 80_000_000_000_000, "2026-12-01T10:00:00Z")
    }

    #[test]
    fn fixed_bytes() {
        let header = fixed();
        let text = String::from_utf8(header.encode()).unwrap();
        let expected = r#"{
  "magic": "ferry-device",
  "version": 1,
  "job": "job-1",
  "machine": "m-0123",
  "machine_name": "web-1",
  "set_id": "abababababababababababababababab",
  "device_number": 2,
  "kind": "box",
  "capacity": 80000000000000,
  "prepared": "2026-12-01T10:00:00Z",
  "mac": "MAC"
}
"#;
        // The MAC pins the canonical encoding and the key derivation.
        let mac = "66e99fcb63625947cb87517bc3c8278f5a691a051f2ac8495cc957aebc15cd18";
        let mut input = Vec::new();
        input.extend_from_slice(b"ferry-device\x01\x00\x00\x00");
        input.extend_from_slice(b"\x05\x00\x00\x00job-1\x06\x00\x00\x00m-0123\x05\x00\x00\x00web-1");
        input.extend_from_slice(&[0xab; 16]);
        input.extend_from_slice(b"\x02\x00\x00\x00\x03\x00\x00\x00box");
        input.extend_from_slice(&80_000_000_000_000u64.to_le_bytes());
        input.extend_from_slice(b"\x14\x00\x00\x002026-12-01T10:00:00Z");
        assert_eq!(header.mac_input(), input);
        let mac_key = blake3::derive_key("ferry device header v1", &[7; 32]);
        assert_eq!(hex::encode(blake3::keyed_hash(&mac_key, &input).as_bytes()), mac);
        assert_eq!(text, expected.replace("MAC", mac));
        assert_eq!(DeviceHeader::decode(text.as_bytes()).unwrap(), header);
    }

    #[test]
    fn verify_and_tamper() {
        let header = fixed();
        assert!(header.verify(&key()));
        assert!(!header.verify(&DiskKey::from_bytes([8; 32])));
        let text = String::from_utf8(header.encode()).unwrap();
        let edits = [
            ("\"job\": \"job-1\"", "\"job\": \"job-2\""),
            ("\"machine\": \"m-0123\"", "\"machine\": \"m-0124\""),
            ("\"machine_name\": \"web-1\"", "\"machine_name\": \"web-2\""),
            ("abababababababababababababababab", "abababababababababababababababac"),
            ("\"device_number\": 2", "\"device_number\": 1"),
            ("\"kind\": \"box\"", "\"kind\": \"disk\""),
            ("\"capacity\": 80000000000000", "\"capacity\": 90000000000000"),
            ("10:00:00Z", "11:00:00Z"),
        ];
        for (from, to) in edits {
            let forged = DeviceHeader::decode(text.replace(from, to).as_bytes()).unwrap();
            assert!(!forged.verify(&key()), "{to}");
        }
    }

    #[test]
    fn rejects_bad_headers() {
        let good = String::from_utf8(fixed().encode()).unwrap();
        let cases = [
            good.replace("ferry-device", "ferry-devic"),
            good.replace("\"version\": 1", "\"version\": 0"),
            good.replace("\"job\": \"job-1\"", "\"job\": \"\""),
            good.replace("\"job\": \"job-1\"", "\"job\": \"a\\u001bb\""),
            good.replace("\"machine\": \"m-0123\"", "\"machine\": \"\""),
            good.replace("\"machine_name\": \"web-1\"", "\"machine_name\": \"a\\nb\""),
            good.replace("\"machine_name\": \"web-1\"", &format!("\"machine_name\": \"{}\"", "x".repeat(257))),
            good.replace("abababababababababababababababab", "ABABABABABABABABABABABABABABABAB"),
            good.replace("\"device_number\": 2", "\"device_number\": 0"),
            good.replace("\"device_number\": 2", "\"device_number\": 11"),
            good.replace("\"kind\": \"box\"", "\"kind\": \"tape\""),
            good.replace("\"capacity\": 80000000000000", "\"capacity\": -1"),
            good.replace("2026-12-01T10:00:00Z", "yesterday"),
            good.replace("\"mac\"", "\"extra\": 1, \"mac\""),
            good.replace("\"mac\": \"66", "\"mac\": \""),
            good.replace("  \"machine_name\": \"web-1\",\n", ""),
            "{}".into(),
            String::new(),
        ];
        for bad in cases {
            assert!(matches!(DeviceHeader::decode(bad.as_bytes()), Err(DiskFormatError::Malformed(_))), "{bad}");
        }
        let newer = good.replace("\"version\": 1", "\"version\": 2");
        assert_eq!(DeviceHeader::decode(newer.as_bytes()), Err(DiskFormatError::NewerVersion(2)));
        // An empty machine name and an unstated capacity are valid.
        let h = DeviceHeader::new(&key(), "j", "m", "", [1; 16], 10, "disk", 0, "2026-12-01T10:00:00+01:00");
        assert_eq!(DeviceHeader::decode(&h.encode()).unwrap(), h);
    }

    proptest! {
        #[test]
        fn prop_round_trip(
            job in "[a-zA-Z0-9 ._-]{1,40}",
            machine in "[a-z0-9-]{1,40}",
            name in "[a-zA-Z0-9 ._-]{0,40}",
            set_id in any::<[u8; 16]>(),
            number in 1u32..=MAX_DISKS,
            kind in 0usize..2,
            capacity in any::<u64>(),
            key in any::<[u8; 32]>(),
        ) {
            let key = DiskKey::from_bytes(key);
            let h = DeviceHeader::new(&key, &job, &machine, &name, set_id, number, DEVICE_KINDS[kind], capacity, "2026-12-01T10:00:00Z");
            let back = DeviceHeader::decode(&h.encode()).unwrap();
            prop_assert!(back.verify(&key));
            prop_assert_eq!(back, h);
        }

        #[test]
        fn prop_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = DeviceHeader::decode(&bytes);
        }

        #[test]
        fn prop_mutated_header_never_panics_nor_verifies(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = fixed().encode();
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(h) = DeviceHeader::decode(&bytes) {
                // Only a change of layout (white space) keeps the same fields.
                prop_assert!(h == fixed() || !h.verify(&key()));
            }
        }
    }
}
