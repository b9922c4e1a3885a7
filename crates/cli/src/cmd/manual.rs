//! `ferry completions SHELL` and `ferry man`: shell completions and manual pages, generated
//! from the command line's own definition (`crate::cli`), so they never drift from it.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::Outcome;

pub fn completions(shell: clap_complete::Shell) -> Outcome {
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
    Outcome::Success
}

/// Every page into `out` (ferry.1, then ferry-SUB.1 and ferry-SUB-SUBSUB.1 for each command),
/// or ferry.1 on stdout.
pub fn man(out: Option<&Path>) -> Result<Outcome> {
    let cmd = Cli::command();
    let Some(dir) = out else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("write the manual page")?;
        return Ok(Outcome::Success);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut written = 0;
    write_pages(cmd, "ferry", dir, &mut written)?;
    eprintln!("wrote {written} manual pages into {} (read them with `man ferry`, `man ferry-backup`, ...)", dir.display());
    Ok(Outcome::Success)
}

fn write_pages(cmd: clap::Command, name: &str, dir: &Path, written: &mut usize) -> Result<()> {
    let cmd = cmd.name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page).context("render a manual page")?;
    std::fs::write(&path, page).with_context(|| format!("write {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub.clone(), &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
