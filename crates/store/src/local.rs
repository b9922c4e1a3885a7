//! The local-folder backend: `object_store`'s `LocalFileSystem`, with fsync on.

use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;

use crate::backend::ObjectStoreBackend;
use crate::error::{Result, StoreError};

/// Open (creating it if missing) the folder `path` as a store.
///
/// Writes go to a staging file `KEY#N` beside the final name, are fsynced, then published
/// atomically: `put` renames over the key, `put_if_absent` hard-links to it (which fails if the
/// key exists, so it is atomic), and the parent directory is fsynced before returning. A crash
/// can leave a stray `KEY#N` staging file, never a partial object at `KEY`; `list` does not show
/// staging files. Empty folders are left in place after deletes.
pub(crate) fn open(path: &Path) -> Result<ObjectStoreBackend> {
    let shown = path.display().to_string();
    let fail = |e: &dyn std::fmt::Display| StoreError::permanent("open", shown.clone(), e.to_string());
    std::fs::create_dir_all(path).map_err(|e| fail(&e))?;
    let root = std::fs::canonicalize(path).map_err(|e| fail(&e))?;
    let fs = LocalFileSystem::new_with_prefix(&root).map_err(|e| fail(&e))?.with_fsync(true);
    Ok(ObjectStoreBackend::new(Arc::new(fs), format!("local folder {}", root.display())))
}
