//! Shared glue: locating and opening the repository, passphrases, progress display.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferry_api::JobUpdate;
use ferry_repo::{Progress, Repository};

use crate::cli::Global;
use crate::Outcome;

/// Minimum passphrase length for new passphrases.
pub const MIN_PASSPHRASE: usize = 16;

/// The repository location, or a clear error.
pub fn location(g: &Global) -> Result<String> {
    match &g.repo {
        Some(r) if !r.is_empty() => Ok(r.clone()),
        _ => bail!("no repository given: pass --repo LOCATION or set FERRY_REPO (this machine is not registered with a vault)"),
    }
}

pub fn cache_dir(g: &Global) -> PathBuf {
    g.cache_dir.clone().unwrap_or_else(|| dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("ferry"))
}

fn first_line(bytes: Vec<u8>) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let mut line = bytes[..end].to_vec();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// The global option that names a passphrase file, as messages show it.
pub const PASSWORD_FILE: &str = "--password-file FILE (or FERRY_PASSWORD_FILE)";

/// The passphrase: --password-file, FERRY_PASSWORD, or a prompt on a terminal.
pub fn passphrase(g: &Global, prompt: &str) -> Result<Vec<u8>> {
    if let Some(f) = &g.password_file {
        let b = std::fs::read(f).with_context(|| format!("read password file {}", f.display()))?;
        return Ok(first_line(b));
    }
    if let Ok(p) = std::env::var("FERRY_PASSWORD") {
        return Ok(p.into_bytes());
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password(prompt).context("read passphrase")?.into_bytes());
    }
    bail!("no passphrase: give it with {PASSWORD_FILE}, or in FERRY_PASSWORD (there is no terminal to ask on)")
}

/// A new passphrase, checked for length; prompted twice on a terminal. `file` came from the
/// option whose flag and variable `file_option` names (for the message when nothing is given),
/// `env` holds the passphrase itself.
pub fn new_passphrase(file: Option<&Path>, file_option: &str, env: &str, g: Option<&Global>) -> Result<Vec<u8>> {
    let p = if let Some(f) = file {
        first_line(std::fs::read(f).with_context(|| format!("read password file {}", f.display()))?)
    } else if let Ok(p) = std::env::var(env) {
        p.into_bytes()
    } else if let Some(g) = g.filter(|g| g.password_file.is_some() || std::env::var("FERRY_PASSWORD").is_ok()) {
        passphrase(g, "")?
    } else if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("new passphrase: ")?;
        let b = rpassword::prompt_password("repeat it: ")?;
        if a != b {
            bail!("the two passphrases differ");
        }
        a.into_bytes()
    } else {
        bail!("no new passphrase: give it with {file_option}, or in {env} (there is no terminal to ask on)")
    };
    if p.len() < MIN_PASSPHRASE {
        bail!("the passphrase is too short: use at least {MIN_PASSPHRASE} characters");
    }
    Ok(p)
}

/// Opens the repository named by the global options.
pub fn open(g: &Global) -> Result<Repository> {
    open_showing(g, None)
}

/// Opens the repository, with a spinner saying `what` on a terminal while it is opened and its
/// index brought up to date (after any passphrase prompt).
pub fn open_showing(g: &Global, what: Option<&str>) -> Result<Repository> {
    let store = open_store(g)?;
    let pw = passphrase(g, "repository passphrase: ")?;
    let _spinner = what.map(Spinner::start);
    Ok(Repository::open(store, &pw, &cache_dir(g))?)
}

/// A spinner with a message and the time spent, on stderr when it is a terminal, cleared when
/// dropped: for waits whose length nobody can tell in advance.
pub struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub fn start(what: &str) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// The repository's store: `--repo`, or else this machine's repository in the vault it is
/// registered with.
pub fn open_store(g: &Global) -> Result<std::sync::Arc<dyn ferry_store::Store>> {
    if g.repo.as_deref().is_some_and(|r| !r.is_empty()) {
        let loc = location(g)?;
        return ferry_store::open(&loc).with_context(|| format!("open repository location {}", redact(&loc)));
    }
    if let Some(name) = &g.machine {
        // Another machine's repository, with a user's token.
        let client = admin_client(g)?;
        let id = machine_id(&client, name)?;
        return Ok(ferry_store::open_vault(client, &id)?);
    }
    match Registration::load_for(g)? {
        Some(r) => r.store(),
        None => location(g).map(|_| unreachable!("location fails without --repo")),
    }
}

/// Whether the command works on a repository in a vault (this machine's, or another's with
/// --machine), where the vault, not the machine, deletes data.
pub fn in_vault(g: &Global) -> bool {
    if g.repo.as_deref().is_some_and(|r| !r.is_empty()) {
        return false;
    }
    g.machine.is_some() || Registration::load_for(g).ok().flatten().is_some()
}

/// A job in the vault for a command this registered machine runs against its repository there:
/// opened at the start, kept alive by a heartbeat, closed with the outcome. Reporting is best
/// effort: a vault that cannot take the report never fails the backup itself.
pub struct Job {
    client: ferry_store::VaultClient,
    machine: String,
    id: i64,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

impl Job {
    /// Opens a job when the command runs against this machine's vault repository.
    pub fn start(g: &Global, kind: &str) -> Option<Job> {
        if g.repo.as_deref().is_some_and(|r| !r.is_empty()) || g.machine.is_some() {
            return None;
        }
        let reg = Registration::load_for(g).ok().flatten()?;
        let client = ferry_store::VaultClient::new(&reg.vault, &reg.cert_sha256, &reg.token).ok()?;
        let id = if let Ok(opened) = client.open_job(&reg.machine, kind) {
            opened.id
        } else {
            tracing::warn!("the vault did not open a {kind} job; going on without reporting");
            return None;
        };
        let machine = reg.machine;
        let stop = Arc::new(AtomicBool::new(false));
        let every = std::env::var("FERRY_JOB_HEARTBEAT_S").ok().and_then(|v| v.parse().ok()).unwrap_or(10u64);
        let beat = {
            let (client, machine, stop) = (client.clone(), machine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut waited = 0;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    waited += 100;
                    if waited >= every * 1000 {
                        waited = 0;
                        let _ = client.report_job(&machine, id, &JobUpdate { state: "running".into(), ..Default::default() });
                    }
                }
            })
        };
        Some(Job { client, machine, id, stop, beat: Some(beat) })
    }

    /// Closes the job: `state` is completed, completed-with-errors or failed.
    pub fn finish(self, state: &str, bytes: u64, files: u64, errors: Vec<String>) {
        self.close(JobUpdate { state: state.into(), bytes, files, errors, ..Default::default() });
    }

    /// Closes a backup's job, with the size of the data it covers (the protected size the
    /// vault's dashboard shows) and the recovery point it made.
    pub fn finish_backup(self, state: &str, errors: Vec<String>, end: BackupEnd<'_>) {
        self.close(JobUpdate {
            state: state.into(),
            bytes: end.bytes_added,
            files: end.files,
            errors,
            total_bytes: Some(end.total_bytes),
            recovery_point: Some(end.recovery_point.into()),
            tags: end.tags.to_vec(),
        });
    }

    fn close(mut self, report: JobUpdate) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        if let Err(e) = self.client.report_job(&self.machine, self.id, &report) {
            tracing::warn!("could not report the job's end to the vault: {e}");
        }
    }
}

/// What a backup's job reports at its end.
pub struct BackupEnd<'a> {
    pub bytes_added: u64,
    pub files: u64,
    pub total_bytes: u64,
    pub recovery_point: &'a str,
    pub tags: &'a [String],
}

/// Closes `job` as failed when `r` is an error; passes `r` on.
pub fn fail_job_on_error<T, E: std::fmt::Display>(job: &mut Option<Job>, r: Result<T, E>) -> Result<T, E> {
    if let Err(e) = &r {
        if let Some(j) = job.take() {
            j.finish("failed", 0, 0, vec![format!("{e:#}")]);
        }
    }
    r
}

/// A client for a running vault with a user's token: `--vault` and `--vault-cert` (or this
/// machine's registration), and `--token-file`. Also returns the pinned fingerprint.
pub fn admin_client_and_pin(g: &Global) -> Result<(ferry_store::VaultClient, String)> {
    let token_file = g.token_file.as_ref().context("no user token: pass --token-file FILE or set FERRY_TOKEN_FILE")?;
    let token = std::fs::read_to_string(token_file).with_context(|| format!("read token file {}", token_file.display()))?;
    let registered = Registration::load(&config_dir(g))?;
    let url = match (&g.vault, &registered) {
        (Some(v), _) => v.clone(),
        (None, Some(r)) => r.vault.clone(),
        (None, None) => bail!("which vault? pass --vault URL or set FERRY_VAULT"),
    };
    let pin = match (&g.vault_cert, &registered) {
        (Some(c), _) => ferry_store::cert_file_fingerprint(c)?,
        (None, Some(r)) if r.vault == url => r.cert_sha256.clone(),
        _ => bail!("the vault's certificate is needed to trust it: pass --vault-cert FILE or set FERRY_VAULT_CERT"),
    };
    Ok((ferry_store::VaultClient::new(&url, &pin, token.trim())?, pin))
}

pub fn admin_client(g: &Global) -> Result<ferry_store::VaultClient> {
    admin_client_and_pin(g).map(|(c, _)| c)
}

/// A machine's ID from its name.
pub fn machine_id(client: &ferry_store::VaultClient, name: &str) -> Result<String> {
    client
        .machines()?
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.id)
        .with_context(|| format!("the vault has no machine named {name:?} (`ferry vault machines` lists them)"))
}

/// The configuration folder (it holds the machine's vault token) and the cache folder (file
/// names and sizes of the backups) are the user's own: made 0700 (see `Registration::save` and
/// the repository cache), and an existing one found open to others is closed at start-up, said
/// once. A folder that cannot be changed (another user's) is left as it is, with a warning.
pub fn repair_private_dirs(g: &Global) {
    for dir in [config_dir(g), cache_dir(g)] {
        if !dir.is_dir() {
            continue;
        }
        match ferry_store::private_dir(&dir) {
            Ok(Some(was)) => eprintln!("note: {} was open to other users (mode {was:o}); it is now 0700", dir.display()),
            Ok(None) => {}
            Err(e) => eprintln!("warning: {e}: other users of this machine may read it"),
        }
    }
}

pub fn config_dir(g: &Global) -> PathBuf {
    g.config_dir.clone().unwrap_or_else(|| dirs::config_dir().unwrap_or_else(std::env::temp_dir).join("ferry"))
}

/// This machine's registration with a vault (`CONFIG_DIR/registration.json`, mode 0600: it
/// holds the machine's token).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    pub vault: String,
    pub cert_sha256: String,
    pub machine: String,
    pub name: String,
    pub token: String,
}

impl Registration {
    pub const FILE: &'static str = "registration.json";

    pub fn load(dir: &Path) -> Result<Option<Registration>> {
        read_json(&dir.join(Self::FILE), "register again")
    }

    /// This machine's registration as the command should use it: `--vault URL` (or
    /// `FERRY_VAULT`) reaches the same vault through another of its servers (servers of one
    /// vault share the database, the store and the certificate, so the pinned fingerprint and
    /// the machine's token hold there too; a server with another certificate is refused).
    /// `--vault-cert FILE` pins that certificate instead.
    pub fn load_for(g: &Global) -> Result<Option<Registration>> {
        let Some(mut r) = Self::load(&config_dir(g))? else { return Ok(None) };
        if let Some(url) = &g.vault {
            r.vault = url.clone();
        }
        if let Some(cert) = &g.vault_cert {
            r.cert_sha256 = ferry_store::cert_file_fingerprint(cert)?;
        }
        Ok(Some(r))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        ferry_store::private_dir(dir)?;
        Ok(ferry_store::write_private(&dir.join(Self::FILE), &serde_json::to_vec_pretty(self)?)?)
    }

    pub fn store(&self) -> Result<std::sync::Arc<dyn ferry_store::Store>> {
        let client = ferry_store::VaultClient::new(&self.vault, &self.cert_sha256, &self.token)?;
        Ok(ferry_store::open_vault(client, &self.machine)?)
    }
}

/// A JSON file, or `None` if it does not exist; `remedy` says what to do if it is damaged.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, remedy: &str) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| format!("{} is damaged; {remedy}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

pub use ferry_seed::redact_location as redact;

/// A progress bar on stderr while `progress` changes, when stderr is a terminal.
pub struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    /// Clears the bar now (before a summary line), not when dropped.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn start(progress: Arc<Progress>, verb: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return ProgressDisplay { stop, handle: None };
        }
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(verb);
            while !s.load(Ordering::Relaxed) {
                let total = progress.bytes_total.load(Ordering::Relaxed);
                let done = progress.bytes_done.load(Ordering::Relaxed);
                bar.set_length(total.max(done));
                bar.set_position(done);
                let files = progress.files_done.load(Ordering::Relaxed);
                let ftotal = progress.files_total.load(Ordering::Relaxed);
                bar.set_message(format!("{files}/{ftotal} files"));
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        ProgressDisplay { stop, handle: Some(handle) }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints the vault's answer as pretty JSON on stdout, its fields in name order (as the vault
/// sends them and `--json` has always shown them).
pub fn print_answer<T: serde::Serialize>(v: &T) -> Result<()> {
    print_json(&serde_json::to_value(v)?)
}

/// A text field for a human, `-` when it is missing.
pub fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// The vault as the seeding commands reach it: with `--token-file`, as that user; otherwise as
/// this registered machine.
pub fn seeding_client(g: &Global) -> Result<ferry_store::VaultClient> {
    if g.token_file.is_some() {
        return admin_client(g);
    }
    match Registration::load_for(g)? {
        Some(r) => Ok(ferry_store::VaultClient::new(&r.vault, &r.cert_sha256, &r.token)?),
        None => {
            bail!("this machine is not registered with a vault: run `ferry register`, or pass --token-file (and --vault) as a vault user")
        }
    }
}

/// The lines of a job's disks (or devices: `unit`, padded to 6), its seeded recovery point and
/// its errors, for `show` and `device status`.
pub fn disks_and_outcome(s: &mut String, j: &ferry_api::ImportJob, unit: &str) {
    for d in &j.disks {
        s.push_str(&format!("  {unit}{}:   {}, {} objects, {}", d.id, d.state, d.objects, size(d.bytes)));
        if d.copied + d.skipped > 0 {
            s.push_str(&format!(", {} copied, {} there already", d.copied, d.skipped));
        }
        s.push('\n');
        for e in &d.errors {
            s.push_str(&format!("      error: {e}\n"));
        }
    }
    if let Some(rp) = &j.recovery_point {
        s.push_str(&format!("  seeded recovery point: {rp}\n"));
    }
    for e in &j.errors {
        s.push_str(&format!("  error: {e}\n"));
    }
}

/// The copy and ingest of a checked set ([`ferry_seed::copy_and_ingest`]), its progress on
/// stderr and its end on stdout; shared with `ferry device import`.
pub fn copy_and_ingest(
    g: &Global,
    client: &ferry_store::VaultClient,
    job: &ferry_api::ImportJob,
    plan: ferry_seed::CopyPlan<'_>,
    log_dir: Option<&Path>,
    read: &mut ferry_seed::ReadObject<'_>,
) -> Result<Outcome> {
    let name = plan.name;
    // The copy's progress on a terminal, as diskprep shows its own.
    let progress = Arc::new(Progress::default());
    progress.add_total(plan.items.len() as u64, plan.items.iter().map(|i| i.size).sum());
    let display = ProgressDisplay::start(progress.clone(), "import");
    let j = ferry_seed::copy_and_ingest(client, job, plan, log_dir, read, &mut |event| match event {
        ferry_seed::IngestEvent::ObjectDone { bytes } => progress.add_done(1, bytes),
        ferry_seed::IngestEvent::ObjectFailed { error } => eprintln!("error: {error}"),
        ferry_seed::IngestEvent::UnitFailed { unit, number, errors, log } => {
            eprintln!("{unit} {number}: {errors} objects could not be imported; see {}", log.display());
        }
        ferry_seed::IngestEvent::Copied { copied, skipped, seconds } => {
            display.stop();
            eprintln!("import job {name}: {copied} objects copied, {skipped} there already, in {}; ingesting", self::seconds(seconds));
        }
    })?;
    // Where the per-disk copy and error logs are (ferry_seed::copy_and_ingest: `log_dir`, else
    // the current folder).
    let logs = log_dir.map_or_else(|| std::env::current_dir().unwrap_or_else(|_| ".".into()), Path::to_path_buf);
    let unit = if j.job.kind == "device" { "device" } else { "disk" };
    eprintln!("import job {name}: the copy and error logs of each {unit} are in {} ({name}-{unit}N-copy.log, -error.log)", logs.display());
    if g.json {
        print_answer(&j)?;
    } else {
        println!("import job {name}: ingested; recovery point {}", text(&j.job.recovery_point));
    }
    Ok(Outcome::Success)
}

/// A size given on the command line: `500GiB`, `2TB`, `1048576`: decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u64.pow(2),
        "g" | "gb" => 1000u64.pow(3),
        "t" | "tb" => 1000u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}
// Written here rather than taken from a crate: the accepted forms (decimal and binary units,
// case-insensitive, fractions, a bare byte count) are part of the command line's contract, and
// the crates that parse sizes each accept a different set.

/// A size as the command line shows it: two decimals ([`ferry_api::human_size`]).
pub fn size(n: u64) -> String {
    ferry_api::human_size(n, 2)
}

/// A duration for a person, with the precision it was measured to: `0.163s`, `4.32s`, `81.2s`.
pub fn seconds(s: f64) -> String {
    match s {
        s if s < 1.0 => format!("{s:.3}s"),
        s if s < 10.0 => format!("{s:.2}s"),
        s => format!("{s:.1}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500GiB"), Some(500 << 30));
        assert_eq!(parse_size("2TB"), Some(2_000_000_000_000));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("1.5MiB"), Some(3 << 19));
        assert_eq!(parse_size("12 parsecs"), None);
    }
}
