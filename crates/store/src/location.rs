//! Parsing of location strings: a path, `file://PATH`, `az://CONTAINER[/PREFIX]`,
//! `s3://BUCKET[/PREFIX]`.

use std::path::PathBuf;

use crate::error::{Result, StoreError};
use crate::store::validate_key;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Local(PathBuf),
    Azure { container: String, prefix: Option<String> },
    S3 { bucket: String, prefix: Option<String> },
}

pub(crate) fn parse(location: &str) -> Result<Location> {
    let Some((scheme, rest)) = location.split_once("://") else {
        if location.is_empty() {
            return Err(invalid(location, "empty location"));
        }
        return Ok(Location::Local(PathBuf::from(location)));
    };
    match scheme {
        "file" if !rest.is_empty() => Ok(Location::Local(PathBuf::from(rest))),
        "az" => {
            let (container, prefix) = split(location, rest)?;
            check_name(location, &container, false)?;
            Ok(Location::Azure { container, prefix })
        }
        "s3" => {
            let (bucket, prefix) = split(location, rest)?;
            check_name(location, &bucket, true)?;
            Ok(Location::S3 { bucket, prefix })
        }
        _ => Err(invalid(
            location,
            "unsupported location: use a folder path, file://PATH, az://CONTAINER[/PREFIX] \
             or s3://BUCKET[/PREFIX]",
        )),
    }
}

/// Whether the store at `inner` lies within the one at `outer` (or is it): the same backend,
/// container or bucket, and `inner`'s folder or prefix inside `outer`'s. Local folders are
/// compared as absolute paths, with symbolic links resolved as far as the path exists, so
/// `./a/../b` and a link to `b` are `b`. The vault uses it to keep import containers out of
/// its own store and data folder.
pub fn location_within(inner: &str, outer: &str) -> Result<bool> {
    Ok(match (parse(inner)?, parse(outer)?) {
        (Location::Local(a), Location::Local(b)) => resolved(&a).starts_with(resolved(&b)),
        (Location::Azure { container: a, prefix: pa }, Location::Azure { container: b, prefix: pb })
        | (Location::S3 { bucket: a, prefix: pa }, Location::S3 { bucket: b, prefix: pb }) => {
            a == b && std::path::Path::new(pa.as_deref().unwrap_or("")).starts_with(pb.as_deref().unwrap_or(""))
        }
        _ => false,
    })
}

/// `path` absolute, its longest existing ancestor canonicalised (links resolved) and the rest
/// appended without `.` and `..`.
fn resolved(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut normal = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return normal,
        }
    }
}

/// The error echoes the location only when it cannot hold credentials (`user:secret@…`,
/// `?sig=…`).
fn invalid(location: &str, message: &str) -> StoreError {
    let shown = if location.contains(['@', '?']) { "(location not shown)" } else { location };
    StoreError::permanent("open", shown, message)
}

fn split(location: &str, rest: &str) -> Result<(String, Option<String>)> {
    let (name, prefix) = match rest.split_once('/') {
        Some((name, prefix)) => (name, prefix.trim_end_matches('/')),
        None => (rest, ""),
    };
    if prefix.is_empty() {
        return Ok((name.to_string(), None));
    }
    validate_key("open", prefix).map_err(|e| invalid(location, &format!("prefix: {}", e.message)))?;
    Ok((name.to_string(), Some(prefix.to_string())))
}

/// Azure container names: 3-63 of `a-z 0-9 -`, starting and ending with a letter or digit, no
/// `--`. S3 bucket names: the same, with `.` allowed too.
fn check_name(location: &str, name: &str, dots: bool) -> Result<()> {
    let what = if dots { "bucket" } else { "container" };
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let ok = (3..=63).contains(&name.len())
        && name.chars().all(allowed)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(invalid(location, &format!("invalid {what} name: 3-63 lowercase letters, digits and '-'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(parse("/srv/repo").unwrap(), Location::Local("/srv/repo".into()));
        assert_eq!(parse("repo").unwrap(), Location::Local("repo".into()));
        assert_eq!(parse("file:///srv/repo").unwrap(), Location::Local("/srv/repo".into()));
        assert_eq!(parse("az://backups").unwrap(), Location::Azure { container: "backups".into(), prefix: None });
        assert_eq!(
            parse("az://backups/m1/repo/").unwrap(),
            Location::Azure { container: "backups".into(), prefix: Some("m1/repo".into()) }
        );
        assert_eq!(parse("s3://my.bucket-1/p").unwrap(), Location::S3 { bucket: "my.bucket-1".into(), prefix: Some("p".into()) });
    }

    #[test]
    fn rejects_bad_locations() {
        for bad in
            ["", "file://", "gs://bucket", "az://Bad_Name", "az://ab", "az://a.b.c", "s3://-bucket", "s3://bucket/a//b", "s3://bucket/../x"]
        {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::Permanent, "{bad}");
        }
    }

    #[test]
    fn containment_by_backend_and_prefix() {
        let within = |a: &str, b: &str| location_within(a, b).unwrap();
        assert!(within("az://ccc/imports/j1", "az://ccc"));
        assert!(within("az://ccc/imports/j1", "az://ccc/imports"));
        assert!(!within("az://ccc/imports-old/j1", "az://ccc/imports"), "component-wise");
        assert!(!within("az://ccc", "az://ccc/imports"));
        assert!(!within("az://ddd/x", "az://ccc"));
        assert!(!within("s3://ccc/x", "az://ccc"), "another backend");
        assert!(within("s3://bbb/p/q", "s3://bbb/p/"));

        let dir = tempfile::tempdir().unwrap();
        let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
        std::fs::create_dir_all(dir.path().join("data/store")).unwrap();
        assert!(within(&d("data/store"), &d("data")));
        assert!(within(&d("data/store/x/../y"), &d("data/store")), "not created yet, .. resolved");
        assert!(within(&format!("file://{}", d("data")), &d("data")));
        assert!(!within(&d("data/imports"), &d("data/store")));
        assert!(!within(&d("data"), &d("data/store")));
        std::os::unix::fs::symlink(dir.path().join("data/store"), dir.path().join("link")).unwrap();
        assert!(within(&d("link/j1"), &d("data/store")), "through a link");
    }

    #[test]
    fn errors_do_not_echo_credentials() {
        let e = parse("s3://AKIA:secret@bucket").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = parse("https://acct.blob.core.windows.net/c?sig=secret").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
