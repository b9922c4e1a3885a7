use anyhow::Result;
use ferry_crypto::keyfile::KdfParams;

use crate::cli::{Global, KeyCommand};
use crate::common;
use crate::Outcome;

/// The option that names the new passphrase's file, as messages show it.
const NEW_FILE: &str = "--new-password-file FILE (or FERRY_NEW_PASSWORD_FILE)";

pub fn run(g: &Global, k: &KeyCommand) -> Result<Outcome> {
    let mut repo = common::open(g)?;
    match k {
        KeyCommand::Add(n) => {
            let pw = common::new_passphrase(n.new_password_file.as_deref(), NEW_FILE, "FERRY_NEW_PASSWORD", None)?;
            let id = repo.add_key(&pw, KdfParams::default())?;
            if g.json {
                common::print_json(&serde_json::json!({"id": id.to_hex()}))?;
            } else {
                println!("added key {}", id.short());
            }
        }
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if g.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(id, kf, cur)| serde_json::json!({"id": id.to_hex(), "current": cur, "created": kf.created, "host": kf.host, "user": kf.user}))
                    .collect();
                common::print_json(&v)?;
            } else {
                for (id, kf, cur) in keys {
                    println!("{} {:<10} {} {}@{}", if cur { "*" } else { " " }, id.short(), kf.created, kf.user, kf.host);
                }
            }
        }
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(id)?;
            println!("removed key {}", removed.short());
        }
        KeyCommand::Passwd(n) => {
            let pw = common::new_passphrase(n.new_password_file.as_deref(), NEW_FILE, "FERRY_NEW_PASSWORD", None)?;
            let id = repo.change_passphrase(&pw, KdfParams::default())?;
            println!("passphrase changed (key {})", id.short());
        }
    }
    Ok(Outcome::Success)
}
