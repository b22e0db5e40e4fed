//! `nix nar ...`: inspect and create NAR files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::cmd::accessor::{list_json, list_text, Accessor, NarAccessor, Stat};

#[derive(Subcommand, Debug)]
pub enum NarCmd {
    /// Print the contents of a file inside a NAR file on stdout.
    Cat { nar: PathBuf, path: String },
    /// Show information about a path inside a NAR file.
    Ls {
        /// List subdirectories recursively.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Show detailed file information.
        #[arg(short = 'l', long)]
        long: bool,
        /// Show directories rather than their contents.
        #[arg(short = 'd', long)]
        directory: bool,
        /// Produce output in JSON format.
        #[arg(long)]
        json: bool,
        nar: PathBuf,
        path: String,
    },
    /// Serialise a path to stdout in NAR format (alias of `pack`).
    #[command(name = "dump-path")]
    DumpPath { path: PathBuf },
    /// Serialise a path to stdout in NAR format.
    Pack { path: PathBuf },
}

pub fn run(cmd: NarCmd) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 17, stdout.lock());
    match cmd {
        NarCmd::Cat { nar, path } => {
            let acc = NarAccessor::open(nar)?;
            let p = norm(&path);
            match acc.stat(&p)? {
                Some(Stat::Regular { .. }) => out.write_all(&acc.read_file(&p)?)?,
                Some(_) => bail!("path '{path}' inside the NAR is not a regular file"),
                None => bail!("NAR does not contain a path '{path}'"),
            }
        }
        NarCmd::Ls {
            recursive,
            long,
            directory,
            json,
            nar,
            path,
        } => {
            let acc = NarAccessor::open(nar)?;
            let p = norm(&path);
            if json {
                if directory {
                    return Err(crate::context::usage(
                        "'--directory' is useless with '--json'",
                    ));
                }
                writeln!(out, "{}", list_json(&acc, &p, recursive)?)?;
            } else {
                let mut lines = Vec::new();
                list_text(&acc, &p, recursive, long, directory, &mut lines)?;
                for l in lines {
                    writeln!(out, "{l}")?;
                }
            }
        }
        NarCmd::DumpPath { path } | NarCmd::Pack { path } => {
            firn_store::nar_fs::dump_path(Path::new(&path), &mut out)?;
        }
    }
    out.flush().context("writing to standard output")?;
    Ok(())
}

/// `/` and `` are the root; other paths lose their trailing slash.
fn norm(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        String::new()
    } else if t.starts_with('/') {
        t.to_string()
    } else {
        format!("/{t}")
    }
}
