use anyhow::Result;
use ferry_repo::{InitOptions, Repository};

use crate::cli::{Global, InitArgs};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &InitArgs) -> Result<Outcome> {
    let store = common::open_store(g)?;
    let pw = common::new_passphrase(g.password_file.as_deref(), common::PASSWORD_FILE, "FERRY_PASSWORD", None)?;
    let opts = InitOptions { compression_level: a.compression, bundle_compression_level: a.bundle_compression, ..Default::default() };
    let where_ = store.describe();
    let repo = Repository::init(store, &pw, &opts, &common::cache_dir(g))?;
    if g.json {
        common::print_json(&serde_json::json!({"id": repo.config().id, "location": where_}))?;
    } else {
        println!("created repository {} at {}", repo.config().id, where_);
        println!("Keep the passphrase safe: without it the data cannot be recovered.");
    }
    Ok(Outcome::Success)
}
