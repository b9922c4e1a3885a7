use anyhow::{Context, Result};
use ferry_repo::{InitOptions, Repository};

use crate::cli::{Global, InitArgs};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &InitArgs) -> Result<Outcome> {
    let loc = common::location(g)?;
    let store = ferry_store::open(&loc).with_context(|| format!("open repository location {}", common::redact(&loc)))?;
    let pw = common::new_passphrase(g.password_file.as_deref(), "FERRY_PASSWORD", None)?;
    let opts = InitOptions { compression_level: a.compression, bundle_compression_level: a.bundle_compression, ..Default::default() };
    let repo = Repository::init(store, &pw, &opts, &common::cache_dir(g))?;
    if g.json {
        common::print_json(&serde_json::json!({"id": repo.config().id, "location": common::redact(&loc)}))?;
    } else {
        println!("created repository {} at {}", repo.config().id, common::redact(&loc));
        println!("Keep the passphrase safe: without it the data cannot be recovered.");
    }
    Ok(Outcome::Success)
}
