//! A machine's repository objects through the vault (`/v1/machines/{id}/objects/...`, `head`,
//! `list`): the answers `ferry_store::VaultStore` reads. The objects themselves travel as
//! bytes.

use serde::{Deserialize, Serialize};

/// The answer to a write: whether the object was created (false: one was there already).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectWritten {
    pub created: bool,
}

/// `GET .../head/{key}`: the object's size, `null` when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSize {
    pub size: Option<u64>,
}

/// `GET .../list?prefix=P`: one object, its key relative to the machine's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    /// Unix seconds, when the store knows it.
    pub modified: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_json() {
        assert_eq!(serde_json::to_string(&ObjectWritten { created: true }).unwrap(), r#"{"created":true}"#);
        assert_eq!(serde_json::from_str::<ObjectSize>(r#"{"size":null}"#).unwrap(), ObjectSize { size: None });
        let e = ObjectEntry { key: "data/ab/abcd".into(), size: 9, modified: Some(1) };
        let text = r#"{"key":"data/ab/abcd","size":9,"modified":1}"#;
        assert_eq!(serde_json::to_string(&e).unwrap(), text);
        assert_eq!(serde_json::from_str::<ObjectEntry>(text).unwrap(), e);
    }
}
