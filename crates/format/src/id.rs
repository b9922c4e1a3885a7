use std::fmt;

/// A 32-byte identifier (a BLAKE3 hash), shown as lowercase hex. Serialized as 64 hex digits
/// in human-readable formats (JSON) and as 32 raw bytes in binary ones (postcard).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Id::from_hex(&s).ok_or_else(|| serde::de::Error::custom("an ID is 64 hex digits"))
        } else {
            <[u8; 32]>::deserialize(d).map(Id)
        }
    }
}

impl Id {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }

    /// The first 8 hex digits, for human output.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            pub const fn from_bytes(b: [u8; 32]) -> Self {
                $name(Id(b))
            }
            pub fn as_bytes(&self) -> &[u8; 32] {
                &(self.0).0
            }
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            pub fn from_hex(s: &str) -> Option<Self> {
                Id::from_hex(s).map($name)
            }
            pub fn short(&self) -> String {
                self.0.short()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

typed_id!(
    /// Names a chunk or tree: keyed BLAKE3 of its plaintext.
    BlobId
);
typed_id!(
    /// Names a pack: BLAKE3 of the pack's bytes. Object key `data/XX/<hex>`.
    PackId
);
typed_id!(
    /// Names an index file: BLAKE3 of its bytes. Object key `index/<hex>`.
    IndexId
);
typed_id!(
    /// Names a recovery point: BLAKE3 of its bytes. Object key `recovery-points/<hex>`.
    RecoveryPointId
);
typed_id!(
    /// Names a key file: BLAKE3 of its bytes. Object key `keys/<hex>`.
    KeyId
);

impl PackId {
    /// The object key of this pack: `data/` + first two hex digits + `/` + full hex.
    pub fn object_key(&self) -> String {
        let h = self.to_hex();
        format!("data/{}/{}", &h[..2], h)
    }
}

impl IndexId {
    pub fn object_key(&self) -> String {
        format!("index/{}", self.to_hex())
    }
}

impl RecoveryPointId {
    pub fn object_key(&self) -> String {
        format!("recovery-points/{}", self.to_hex())
    }
}

impl KeyId {
    pub fn object_key(&self) -> String {
        format!("keys/{}", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_hex_and_postcard_is_raw() {
        let id = PackId::from_bytes([0xab; 32]);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<PackId>(&serde_json::to_string(&id).unwrap()).unwrap(), id);
        assert_eq!(postcard::to_allocvec(&id).unwrap(), vec![0xab; 32]);
        assert!(serde_json::from_str::<PackId>("\"zz\"").is_err());
    }

    #[test]
    fn hex_round_trip_and_keys() {
        let id = PackId::from_bytes([0xab; 32]);
        assert_eq!(PackId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id.object_key(), format!("data/ab/{}", "ab".repeat(32)));
        assert_eq!(PackId::from_hex("zz"), None);
        assert_eq!(id.short(), "abababab");
    }
}
