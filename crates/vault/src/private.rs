//! The vault's files at rest are its own: the data folder (database, certificate key, secrets,
//! owner token, the default store and import folders) is mode 0700 and every file the vault
//! writes is 0600, whatever the umask it was started with. A vault installed before this was
//! enforced is repaired at start-up, and says so once (what it changed, from which mode).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// Restricts what the process creates from now on to its owner (umask 077), makes `data` (and a
/// local store folder outside it) owner-only, and tightens the files directly in `data`. Returns
/// what it repaired, one line each, for the log.
pub(crate) fn secure(data: &Path, store: &str) -> anyhow::Result<Vec<String>> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let mut repaired = Vec::new();
    let mut folder = |path: &Path| -> anyhow::Result<()> {
        if let Some(was) = ferry_store::private_dir(path)? {
            repaired.push(format!("{}: folder mode {was:o} -> 700", path.display()));
        }
        Ok(())
    };
    folder(data)?;
    let local_store = match store.strip_prefix("file://") {
        Some(p) => Some(p),
        None => (!store.contains("://")).then_some(store),
    };
    if let Some(s) = local_store {
        folder(Path::new(s))?;
    }
    for entry in std::fs::read_dir(data).with_context(|| format!("read {}", data.display()))? {
        let entry = entry.with_context(|| format!("read {}", data.display()))?;
        let meta = entry.metadata().with_context(|| format!("read the permissions of {}", entry.path().display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_file() && mode & 0o077 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("restrict {}", entry.path().display()))?;
            repaired.push(format!("{}: file mode {mode:o} -> {:o}", entry.path().display(), mode & 0o700));
        }
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_installation_is_closed_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["vault.db", "vault.db-wal", "vault-key.pem"] {
            std::fs::write(data.join(f), b"x").unwrap();
            std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();

        let repaired = secure(&data, &store.to_string_lossy()).unwrap();
        assert_eq!(repaired.len(), 5, "{repaired:?}");
        assert!(repaired[0].ends_with("data: folder mode 755 -> 700"), "{repaired:?}");
        assert_eq!((mode(&data), mode(&store), mode(&data.join("vault.db"))), (0o700, 0o700, 0o600));
        assert!(secure(&data, &store.to_string_lossy()).unwrap().is_empty(), "said once");

        // From now on the process creates files for its owner only.
        std::fs::write(data.join("new"), b"x").unwrap();
        assert_eq!(mode(&data.join("new")), 0o600);
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    }
}
