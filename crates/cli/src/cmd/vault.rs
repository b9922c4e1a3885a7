//! `ferry vault ...` (at the vault site) and `ferry register` (on a protected machine).

use anyhow::{bail, Context, Result};
use ferry_api::{NewPassword, NewUser, RegisterRequest};
use ferry_repo::{InitOptions, Repository};
use ferry_store::VaultClient;

use crate::cli::{CredentialsArgs, Global, MachineCommand, PolicyCommand, RegisterArgs, ServeArgs, UserCommand, VaultCommand};
use crate::common::{self, Registration};
use crate::Outcome;

pub fn run(g: &Global, v: &VaultCommand) -> Result<Outcome> {
    match v {
        VaultCommand::Serve(a) => serve(a),
        VaultCommand::Credentials(a) => credentials(g, a),
        VaultCommand::Machines => machines(g),
        VaultCommand::Jobs => jobs(g),
        VaultCommand::Policy(PolicyCommand::Set(a)) => {
            let policy = ferry_api::BackupPolicy {
                paths: a.paths.clone(),
                excludes: a.exclude.clone(),
                times: a.times.clone(),
                days: a.days.clone(),
                keep: ferry_api::Keep { daily: a.keep_daily, weekly: a.keep_weekly, monthly: a.keep_monthly, yearly: a.keep_yearly },
                bandwidth: ferry_api::Bandwidth {
                    work_kibps: a.work_limit,
                    other_kibps: a.other_limit,
                    work_hours: a.work_hours.clone(),
                    work_days: a.work_days.clone(),
                },
            };
            if let Err(e) = policy.validate() {
                bail!("policy for {}: {e}", a.machine_name);
            }
            let client = common::admin_client(g)?;
            let id = common::machine_id(&client, &a.machine_name)?;
            client.set_policy(&id, &policy)?;
            if !g.json {
                println!("policy of {} set: {} at {}", a.machine_name, a.paths.join(" "), a.times.join(", "));
            }
            Ok(Outcome::Success)
        }
        VaultCommand::Policy(PolicyCommand::Show { machine_name }) => {
            let client = common::admin_client(g)?;
            let id = common::machine_id(&client, machine_name)?;
            common::print_answer(&client.policy(&id)?)?;
            Ok(Outcome::Success)
        }
        VaultCommand::Retention { machine_name } => {
            let client = common::admin_client(g)?;
            let id = common::machine_id(&client, machine_name)?;
            let r = client.run_retention(&id)?;
            if g.json {
                common::print_answer(&r)?;
            } else {
                println!(
                    "{machine_name}: {} recovery points, {} kept, {} soft-deleted, {} purged; {} packs ({}) deleted",
                    r.recovery_points,
                    r.kept,
                    r.soft_deleted.len(),
                    r.purged.len(),
                    r.packs_deleted,
                    common::size(r.bytes_deleted)
                );
                if let Some(why) = &r.gc_skipped {
                    println!("garbage collection skipped: {why}");
                }
            }
            Ok(Outcome::Success)
        }
        VaultCommand::Deleted { machine_name } => {
            let client = common::admin_client(g)?;
            let id = common::machine_id(&client, machine_name)?;
            let list = client.soft_deleted(&id)?;
            if g.json {
                common::print_answer(&list)?;
            } else {
                // Newest deletion first; each with the time it is purged for good.
                let mut list = list;
                list.sort_by_key(|d| std::cmp::Reverse(d.deleted_at));
                let when = |t: Option<i64>| {
                    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                        .map_or("unknown".into(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                };
                println!("{:<64}  {:<20}  PURGED AFTER", "RECOVERY POINT", "DELETED");
                for d in &list {
                    println!("{:<64}  {:<20}  {}", d.id, when(d.deleted_at), when(d.expires_at));
                }
            }
            Ok(Outcome::Success)
        }
        VaultCommand::Undelete { machine_name, recovery_point } => {
            let client = common::admin_client(g)?;
            let id = common::machine_id(&client, machine_name)?;
            let list = client.soft_deleted(&id)?;
            let found: Vec<&str> = list.iter().map(|d| d.id.as_str()).filter(|rp| rp.starts_with(recovery_point.as_str())).collect();
            let rp = match found.as_slice() {
                [one] => *one,
                [] => {
                    bail!("{machine_name} has no soft-deleted recovery point {recovery_point} (see `ferry vault deleted {machine_name}`)")
                }
                _ => bail!("{recovery_point} matches {} soft-deleted recovery points of {machine_name}: give more digits", found.len()),
            };
            client.undelete(&id, rp)?;
            if !g.json {
                println!("recovery point {rp} of {machine_name} is back, exempt from retention for the soft-delete period");
            }
            Ok(Outcome::Success)
        }
        VaultCommand::User(UserCommand::Add(a)) => {
            let expires_in_s = match &a.expires {
                Some(d) => Some(
                    humantime::parse_duration(d)
                        .with_context(|| format!("--expires {d:?}: give a duration like 8h, 30d or 1y"))?
                        .as_secs()
                        .max(1),
                ),
                None => None,
            };
            let added = common::admin_client(g)?.add_user(&NewUser { name: a.name.clone(), role: a.role.clone(), expires_in_s })?;
            if g.json {
                common::print_answer(&added)?;
            } else {
                println!("{}", added.token);
                let until = added.expires.as_deref().map_or(String::new(), |t| format!(" (valid until {t})"));
                eprintln!("added {} as {}{until}; the token above is shown only now: keep it in a file of mode 0600", a.name, a.role);
            }
            Ok(Outcome::Success)
        }
        VaultCommand::User(UserCommand::List) => {
            let users = common::admin_client(g)?.users()?;
            if g.json {
                return common::print_answer(&users).map(|()| Outcome::Success);
            }
            println!("{:<20} {:<16} {:<21} {:<21} {:<21} STATE", "NAME", "ROLE", "CREATED", "LAST USED", "EXPIRES");
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            for u in users {
                let state = match (&u.revoked, &u.expires) {
                    (Some(t), _) => format!("revoked {t}"),
                    (None, Some(e)) if *e <= now => "expired".to_string(),
                    _ => "active".to_string(),
                };
                let or_dash = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
                println!(
                    "{:<20} {:<16} {:<21} {:<21} {:<21} {state}",
                    u.name,
                    u.role,
                    u.created,
                    or_dash(&u.last_used),
                    or_dash(&u.expires)
                );
            }
            Ok(Outcome::Success)
        }
        VaultCommand::User(UserCommand::Revoke { name }) => {
            common::admin_client(g)?.revoke_user(name)?;
            eprintln!("revoked the token of {name}: it and {name}'s dashboard sessions no longer work");
            Ok(Outcome::Success)
        }
        VaultCommand::User(UserCommand::Remove { name }) => {
            common::admin_client(g)?.remove_user(name)?;
            eprintln!("removed user {name}");
            Ok(Outcome::Success)
        }
        VaultCommand::Machine(MachineCommand::Revoke { name }) => {
            let client = common::admin_client(g)?;
            let id = common::machine_id(&client, name)?;
            client.revoke_machine(&id)?;
            eprintln!(
                "revoked the token of machine {name}: its requests are refused until it registers again \
                 (`ferry vault credentials`, then `ferry register --name {name}` on the machine); its recovery points stay"
            );
            Ok(Outcome::Success)
        }
        VaultCommand::User(UserCommand::Password { name, password_file }) => {
            let pw = common::new_passphrase(password_file.as_deref(), "--password-file FILE", "FERRY_VAULT_USER_PASSWORD", None)?;
            let pw = String::from_utf8(pw).context("the password is not UTF-8")?;
            common::admin_client(g)?.set_password(name, &NewPassword { password: pw })?;
            eprintln!("set the dashboard password of {name}");
            Ok(Outcome::Success)
        }
        VaultCommand::User(UserCommand::Unlock { name }) => {
            let u = common::admin_client(g)?.unlock_user(name)?;
            if g.json {
                common::print_json(&u)?;
            } else if u.was_locked {
                eprintln!("{name} was locked out of the dashboard; the lockout is cleared and its failed logins forgotten");
            } else {
                eprintln!("{name} was not locked out; its failed logins are forgotten");
            }
            Ok(Outcome::Success)
        }
    }
}

fn serve(a: &ServeArgs) -> Result<Outcome> {
    let shared = match &a.database {
        // Refused before anything starts, without echoing the value (it may hold a password).
        Some(db) => ferry_vault::db::Backend::of(db)? == ferry_vault::db::Backend::Postgres,
        None => false,
    };
    if shared && a.store.is_none() {
        eprintln!(
            "vault: note: the store is the folder {}; other servers on this database must use the same store (--store)",
            a.data.join("store").display()
        );
    }
    ferry_store::init_tls();
    let opts = ferry_vault::ServeOptions {
        data: a.data.clone(),
        listen: a.listen,
        store: a.store.clone(),
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        database: a.database.clone(),
        import_containers: a.import_container.clone(),
        secret_file: a.secret_file.clone(),
        shipping_address: a.shipping_address.clone(),
        alerts: ferry_vault::alerts::Sinks {
            webhook: a.alert_webhook.clone(),
            smtp: a.smtp.clone(),
            email: a.alert_email.clone(),
            from: a.alert_from.clone(),
            storage_limit: match &a.storage_alert {
                Some(s) => Some(common::parse_size(s).with_context(|| format!("--storage-alert {s:?}: give a size like 40TB"))?),
                None => None,
            },
        },
        limits: ferry_vault::Limits {
            max_connections: a.max_connections,
            max_connections_per_ip: a.max_connections_per_ip,
            ..ferry_vault::Limits::from_env()
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the vault's runtime")?;
    rt.block_on(ferry_vault::serve(opts, |r| {
        // One write, so a reader that sees the first line sees them all.
        let mut said = format!("vault: listening on https://{}\n", r.addr);
        said += &format!("vault: certificate SHA-256 {}\n", r.fingerprint);
        said += &format!("vault: database {}\n", r.database);
        said += &format!("vault: import jobs go to LOCATION/JOBNAME under {}\n", r.import_containers.join(", "));
        for line in r.repaired {
            said += &format!("vault: permissions repaired (the vault's files are private): {line}\n");
        }
        match r.new_owner {
            Some(p) => {
                said += &format!("vault: first start; the owner token is in {} (keep it secret: it is shown nowhere else)\n", p.display());
            }
            None if shared => {
                said +=
                    "vault: the owner exists already in this database (its token is in the owner.token of the server that started first)\n";
            }
            None => {}
        }
        eprint!("{said}");
    }))?;
    Ok(Outcome::Success)
}

fn credentials(g: &Global, a: &CredentialsArgs) -> Result<Outcome> {
    let (client, fp) = common::admin_client_and_pin(g)?;
    let v = client.credentials()?;
    let file = serde_json::json!({
        "vault": client.url(),
        "cert_sha256": fp,
        "secret": v.secret,
        "expires": v.expires,
    });
    ferry_store::write_private(&a.out, &serde_json::to_vec_pretty(&file)?)?;
    if g.json {
        common::print_json(&serde_json::json!({"file": a.out, "expires": v.expires}))?;
    } else {
        println!("wrote vault credentials to {} (one use; valid 10 days; it holds a secret)", a.out.display());
    }
    Ok(Outcome::Success)
}

fn jobs(g: &Global) -> Result<Outcome> {
    let jobs = common::admin_client(g)?.jobs(g.machine.as_deref())?;
    if g.json {
        common::print_answer(&jobs)?;
    } else {
        println!("{:>6}  {:<16} {:<14} {:<22} {:<20} {:>14} {:>8}  errors", "id", "machine", "kind", "state", "start", "bytes", "files");
        for j in &jobs {
            println!(
                "{:>6}  {:<16} {:<14} {:<22} {:<20} {:>14} {:>8}  {}",
                j.id,
                j.machine,
                j.kind,
                j.state,
                j.start,
                j.bytes,
                j.files,
                j.errors.len()
            );
        }
    }
    Ok(Outcome::Success)
}

fn machines(g: &Global) -> Result<Outcome> {
    let machines = common::admin_client(g)?.machines()?;
    if g.json {
        common::print_answer(&machines)?;
    } else {
        println!("{:<20} {:<20} {:>10} {:>10}  {:<32}  STATE", "NAME", "LAST BACKUP", "STORED", "PROTECTED", "ID");
        let or_dash = |t: Option<&str>| t.unwrap_or("-").to_string();
        for m in &machines {
            println!(
                "{:<20} {:<20} {:>10} {:>10}  {:<32}  {}",
                m.name,
                or_dash(m.last_backup.as_deref()),
                m.stored_bytes.map_or("-".into(), common::size),
                m.protected_bytes.map_or("-".into(), common::size),
                m.id,
                or_dash(m.state.as_deref())
            );
        }
    }
    Ok(Outcome::Success)
}

#[derive(serde::Deserialize)]
struct CredentialsFile {
    vault: String,
    cert_sha256: String,
    secret: String,
}

pub fn register(g: &Global, a: &RegisterArgs) -> Result<Outcome> {
    let dir = common::config_dir(g);
    let path = &a.vault_credentials;
    let creds: CredentialsFile =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("read vault credentials {}", path.display()))?)
            .with_context(|| format!("{} is not a vault credentials file (make one with `ferry vault credentials`)", path.display()))?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => hostname_or_machine(),
    };
    // Registering again with the same vault under the same name is how a machine whose token
    // was revoked goes on (`ferry vault machine revoke`); anything else keeps the registration.
    if let Some(r) = Registration::load(&dir)? {
        if r.vault != creds.vault || r.name != name {
            bail!(
                "this machine is already registered with {} as {:?} ({}); remove it first to register elsewhere",
                r.vault,
                r.name,
                dir.join(Registration::FILE).display()
            );
        }
    }
    // Ask for the passphrase before anything changes in the vault.
    let pw = common::new_passphrase(g.password_file.as_deref(), common::PASSWORD_FILE, "FERRY_PASSWORD", None)?;
    let client = VaultClient::new(&creds.vault, &creds.cert_sha256, "")?;
    let registered = client.register(&RegisterRequest { secret: creds.secret.clone(), name: name.clone() })?;
    let machine = registered.machine.as_str();
    let reg = Registration {
        vault: creds.vault.clone(),
        cert_sha256: creds.cert_sha256.clone(),
        machine: machine.into(),
        name: name.clone(),
        token: registered.token.clone(),
    };
    reg.save(&dir)?;
    let (repo, again) = match Repository::init(reg.store()?, &pw, &InitOptions::default(), &common::cache_dir(g)) {
        Ok(repo) => (repo, false),
        // Registered again (its token had been revoked): the machine's repository is there,
        // and the passphrase must open it.
        Err(ferry_repo::Error::AlreadyExists(_)) => {
            let repo = Repository::open(reg.store()?, &pw, &common::cache_dir(g))
                .context("registered again, but the passphrase does not open this machine's repository in the vault")?;
            (repo, true)
        }
        Err(e) => {
            return Err(e)
                .context("registered, but creating the repository in the vault failed; run `ferry init` (without --repo) to retry")
        }
    };
    if g.json {
        common::print_json(&serde_json::json!({"machine": machine, "name": name, "vault": creds.vault, "repository": repo.config().id}))?;
    } else if again {
        println!(
            "registered again as {name:?} (machine {machine}) with {}; its repository and recovery points are its own again",
            creds.vault
        );
    } else {
        println!("registered as {name:?} (machine {machine}) with {}; its repository is created", creds.vault);
        println!("Keep the passphrase safe: the vault never sees it, and without it the data cannot be recovered.");
    }
    Ok(Outcome::Success)
}

fn hostname_or_machine() -> String {
    let h = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let h: String = h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(64).collect();
    if h.is_empty() {
        "machine".into()
    } else {
        h
    }
}
