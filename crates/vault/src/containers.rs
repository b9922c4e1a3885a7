//! Where import jobs put their objects: the vault decides, never the machine.
//!
//! `ferry vault serve --import-container URL` (repeatable) lists the allowed locations; without
//! it the vault uses the folder `DATA/imports`. A job's container is always `LOCATION/JOBNAME`
//! under one of them: a request may only choose which (by naming the location, or the job's
//! container under it), and anything else is refused with the list of allowed locations. A
//! location that overlaps the vault's own store, or holds its data folder, is refused at
//! start-up, so no job's import or cleanup can reach the repositories or the vault's files. A
//! cleanup removes only what the job's import wrote: the objects its seed manifest lists, and the
//! manifest.

use std::path::Path;

use anyhow::{bail, Context};
use ferry_api::{SeedManifest, SEED_MANIFEST_KEY};

/// The import locations of a vault, checked.
#[derive(Debug, Clone)]
pub(crate) struct ImportLocations(Vec<String>);

/// A location as shown in messages and logs: without a query string (which could hold a
/// credential).
pub(crate) fn shown(location: &str) -> &str {
    location.split_once('?').map_or(location, |(a, _)| a)
}

impl ImportLocations {
    /// The allowed locations (`given`, or `DATA/imports` when none is given, created), each
    /// refused if it is not a valid location, overlaps the vault's store (`store`), or is the
    /// data folder or holds it.
    pub(crate) fn new(given: &[String], data: &Path, store: &str) -> anyhow::Result<ImportLocations> {
        let mut list: Vec<String> = given.iter().map(|l| l.trim_end_matches('/').to_string()).collect();
        if list.is_empty() {
            let default = data.join("imports");
            if let Some(was) = ferry_store::private_dir(&default)? {
                tracing::warn!("{}: permissions were {was:o}, now 0700 (import containers are private to the vault)", default.display());
            }
            list.push(default.to_string_lossy().into_owned());
        }
        let data = data.to_string_lossy();
        for l in &list {
            let context = || format!("--import-container {}", shown(l));
            ferry_store::check_location(l).with_context(context)?;
            if ferry_store::location_within(l, store).with_context(context)?
                || ferry_store::location_within(store, l).with_context(context)?
            {
                bail!(
                    "--import-container {}: overlaps the vault's own store {}; an import or a cleanup there could reach the machines' repositories: choose a location of its own",
                    shown(l),
                    shown(store)
                );
            }
            if ferry_store::location_within(&data, l).with_context(context)? {
                bail!(
                    "--import-container {}: holds the vault's data folder {data}; choose a location of its own (the default is {data}/imports)",
                    shown(l)
                );
            }
        }
        list.dedup();
        Ok(ImportLocations(list))
    }

    /// The locations, the first being the default.
    pub(crate) fn all(&self) -> &[String] {
        &self.0
    }

    /// The container of job `job`: `LOCATION/JOB` under the first location, or under the one
    /// `requested` names (the location itself, or the job's container under it). Refused with
    /// the allowed locations otherwise.
    pub(crate) fn container_for(&self, requested: Option<&str>, job: &str) -> Result<String, String> {
        let under = |l: &str| format!("{l}/{job}");
        let Some(wanted) = requested.map(|r| r.trim_end_matches('/')) else {
            return Ok(under(&self.0[0]));
        };
        match self.0.iter().find(|l| wanted == l.as_str() || wanted == under(l)) {
            Some(l) => Ok(under(l)),
            None => Err(format!(
                "container {}: this vault puts import jobs only under its import locations ({}), each job in LOCATION/JOBNAME; \
                 name one of them, or leave the container out to use the first",
                shown(wanted),
                self.0.iter().map(|l| shown(l)).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Removes from the container of job `job` what its import wrote: the objects its seed manifest
/// lists, then the manifest. Returns how many objects were removed; nothing else in the
/// container is touched (a container without a manifest has nothing of the job's to remove).
pub(crate) fn clean_up(container: &str, job: &str) -> anyhow::Result<u64> {
    let c = ferry_store::open(container).with_context(|| format!("open the container of import job {job}"))?;
    let manifest: SeedManifest = match c.get(SEED_MANIFEST_KEY) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("read the seed manifest of import job {job}"))?,
        Err(e) if e.is_not_found() => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("read the seed manifest of import job {job}")),
    };
    let mut removed = 0;
    for o in &manifest.objects {
        ferry_store::validate_key("cleanup", &o.key)?;
        if c.head(&o.key)?.is_some() {
            c.delete(&o.key).with_context(|| format!("remove {} of import job {job}", o.key))?;
            removed += 1;
        }
    }
    c.delete(SEED_MANIFEST_KEY).with_context(|| format!("remove the seed manifest of import job {job}"))?;
    // A folder container: the folders the objects were in go too, as does the job's own folder
    // once nothing else is in it.
    if !container.contains("://") || container.starts_with("file://") {
        remove_empty_folders(Path::new(container.trim_start_matches("file://")));
    }
    Ok(removed + 1)
}

/// Removes the empty folders under `dir`, and `dir` itself if it ends up empty; best effort
/// (a folder something else was put into stays).
fn remove_empty_folders(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_folders(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_go_under_an_allowed_location_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = data.join("store").to_string_lossy().into_owned();
        let l = ImportLocations::new(&[], &data, &store).unwrap();
        let default = data.join("imports").to_string_lossy().into_owned();
        assert_eq!(l.all(), std::slice::from_ref(&default));
        assert!(data.join("imports").is_dir());
        assert_eq!(l.container_for(None, "j1").unwrap(), format!("{default}/j1"));
        assert_eq!(l.container_for(Some(&format!("{default}/")), "j1").unwrap(), format!("{default}/j1"));
        assert_eq!(l.container_for(Some(&format!("{default}/j1")), "j1").unwrap(), format!("{default}/j1"));
        for bad in [store.as_str(), "/tmp", "az://elsewhere", &format!("{default}/j2"), &format!("{default}/j1/x")] {
            let e = l.container_for(Some(bad), "j1").unwrap_err();
            assert!(e.contains(&default) && e.contains("LOCATION/JOBNAME"), "{bad}: {e}");
        }

        let two = ImportLocations::new(&["az://imports".into(), "s3://seeds/site-a/".into()], &data, &store).unwrap();
        assert_eq!(two.container_for(None, "j1").unwrap(), "az://imports/j1");
        assert_eq!(two.container_for(Some("s3://seeds/site-a"), "j1").unwrap(), "s3://seeds/site-a/j1");
    }

    #[test]
    fn locations_reaching_the_store_or_the_data_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = data.join("store").to_string_lossy().into_owned();
        let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
        for (bad, why) in [
            (d("data/store"), "overlaps the vault's own store"),
            (d("data/store/imports"), "overlaps the vault's own store"),
            (d("data"), "overlaps the vault's own store"),
            (d(""), "overlaps the vault's own store"),
        ] {
            let e = ImportLocations::new(std::slice::from_ref(&bad), &data, &store).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{bad}: {e:#}");
        }
        let elsewhere = d("store-elsewhere");
        let e = ImportLocations::new(&[d("data")], &data, &elsewhere).unwrap_err();
        assert!(format!("{e:#}").contains("holds the vault's data folder"), "{e:#}");
        let e = ImportLocations::new(&["az://store/imports".into()], &data, "az://store").unwrap_err();
        assert!(format!("{e:#}").contains("overlaps"), "{e:#}");
        assert!(ImportLocations::new(&["az://store-imports".into()], &data, "az://store").is_ok());
        assert!(ImportLocations::new(&[d("data/imports")], &data, &store).is_ok());
    }

    #[test]
    fn cleanup_removes_only_what_the_manifest_lists() {
        let dir = tempfile::tempdir().unwrap();
        let loc = dir.path().to_string_lossy().into_owned();
        let c = ferry_store::open(&loc).unwrap();
        for k in ["data/aa/aa01", "index/bb", "config", "other/keep"] {
            c.put(k, bytes::Bytes::from_static(b"x")).unwrap();
        }
        let object = |k: &str| ferry_api::SeedObject { key: k.into(), size: 1, hash: "00".repeat(32) };
        let m = SeedManifest {
            job: "j1".into(),
            set_id: "aa".into(),
            digest: "dd".into(),
            objects: vec![object("data/aa/aa01"), object("index/bb"), object("index/gone")],
        };
        c.put(SEED_MANIFEST_KEY, serde_json::to_vec(&m).unwrap().into()).unwrap();
        assert_eq!(clean_up(&loc, "j1").unwrap(), 3, "two objects and the manifest");
        let left: Vec<String> = c.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(left, ["config", "other/keep"]);
        assert!(!dir.path().join("data").exists() && !dir.path().join("index").exists(), "their folders go too");
        assert_eq!(clean_up(&loc, "j1").unwrap(), 0, "nothing of the job's is left");
        // A container holding only the job's seed goes entirely.
        let only = dir.path().join("only");
        let c = ferry_store::open(&only.to_string_lossy()).unwrap();
        c.put("data/aa/aa01", bytes::Bytes::from_static(b"x")).unwrap();
        c.put(SEED_MANIFEST_KEY, serde_json::to_vec(&m).unwrap().into()).unwrap();
        clean_up(&only.to_string_lossy(), "j1").unwrap();
        assert!(!only.exists());
    }
}
