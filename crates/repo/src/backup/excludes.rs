//! Exclude patterns.
//!
//! A pattern without `/` matches a file or folder name anywhere (`*.tmp`, `node_modules`).
//! A pattern with `/` matches the absolute path: `/home/*/.cache`; one not starting with `/`
//! matches at any depth (`build/out` is `**/build/out`). `*` never crosses `/`; `**` does.
//! A matched folder is skipped with everything below it.

use std::path::Path;

use anyhow::{Context, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
}

fn build(b: GlobSetBuilder, any: bool) -> Result<Option<GlobSet>> {
    if any {
        Ok(Some(b.build().context("compile exclude patterns")?))
    } else {
        Ok(None)
    }
}

impl Excludes {
    pub fn new(patterns: &[String]) -> crate::Result<Self> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut any_name, mut any_path) = (false, false);
        for p in patterns.iter().map(|p| p.trim()).filter(|p| !p.is_empty() && !p.starts_with('#')) {
            let (set, pat) = if p.contains('/') {
                any_path = true;
                let p = p.trim_end_matches('/');
                (&mut paths, if p.starts_with('/') { p.to_string() } else { format!("**/{p}") })
            } else {
                any_name = true;
                (&mut names, p.to_string())
            };
            let g = GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .with_context(|| format!("exclude pattern {p:?}"))?;
            set.add(g);
        }
        Ok(Excludes { names: build(names, any_name)?, paths: build(paths, any_path)? })
    }

    /// Whether `path` (absolute) is excluded.
    pub fn matches(&self, path: &Path) -> bool {
        if let (Some(n), Some(name)) = (&self.names, path.file_name()) {
            if n.is_match(name) {
                return true;
            }
        }
        self.paths.as_ref().is_some_and(|p| p.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let e = Excludes::new(&["*.tmp".into(), "/home/*/.cache".into(), "build/out".into(), "# comment".into()]).unwrap();
        assert!(e.matches(Path::new("/a/b/x.tmp")));
        assert!(!e.matches(Path::new("/a/b/x.tmpl")));
        assert!(e.matches(Path::new("/home/u/.cache")));
        assert!(!e.matches(Path::new("/home/u/v/.cache")));
        assert!(e.matches(Path::new("/src/build/out")));
        assert!(!Excludes::new(&[]).unwrap().matches(Path::new("/x")));
        assert!(Excludes::new(&["[".into()]).is_err());
    }
}
