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
    fn errors_do_not_echo_credentials() {
        let e = parse("s3://AKIA:secret@bucket").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = parse("https://acct.blob.core.windows.net/c?sig=secret").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
