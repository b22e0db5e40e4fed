//! firn's multi-call binary: `firn <command>` is `nix <command>`; invoked through a link named
//! `nix-store`, `nix-hash`, ... it behaves as that legacy tool.

#[macro_use]
mod out;
mod alloc;
mod build_display;
mod closure;
mod closure_source;
mod cmd;
mod context;
mod eval_builds;
mod eval_thread;
mod legacy;
mod logger;
mod make_ca;
mod markdown;
mod paths;
mod realise;
mod report;
mod setting_names;
mod settings;

use std::process::ExitCode;

#[global_allocator]
static ALLOC: alloc::Mimalloc = alloc::Mimalloc;

use context::{Failure, UsageError};

/// The names firn answers to, for `firn install-links`.
pub const TOOL_NAMES: &[&str] = &[
    "nix",
    "nix-build",
    "nix-shell",
    "nix-instantiate",
    "nix-store",
    "nix-env",
    "nix-hash",
    "nix-collect-garbage",
    "nix-copy-closure",
    "nix-prefetch-url",
    "nix-daemon",
];

/// What `TOOL --version` prints: CppNix's shape (`nix (Nix) 2.8.0`) with the version of Nix
/// firn implements, so that scripts reading the last word (or the only version number)
/// accept it; as `firn --version`, firn's own version too.
pub fn version_line(tool: &str) -> String {
    if tool == "firn" {
        format!(
            "firn {} (Nix {})",
            env!("CARGO_PKG_VERSION"),
            firn_eval::NIX_VERSION
        )
    } else {
        format!("{tool} (firn) {}", firn_eval::NIX_VERSION)
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = args.remove(0);
    let prog = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "firn".into());
    let result = match prog.as_str() {
        "nix-hash" => legacy::nix_hash::main(args),
        "nix-store" => legacy::nix_store::main(args),
        "nix-instantiate" => legacy::nix_instantiate::main(args),
        "nix-build" => legacy::nix_build::main(args),
        "nix-copy-closure" => legacy::nix_copy_closure::main(args),
        "nix" | "firn" if args.first().is_some_and(|a| a == "--version") => {
            outln!("{}", version_line(&prog));
            Ok(())
        }
        "nix" | "firn" => cmd::main(args),
        other if TOOL_NAMES.contains(&other) => Err(anyhow::anyhow!(
            "'{other}' is not implemented by firn yet; use 'nix-store', 'nix-hash', 'nix-instantiate --parse' or the 'nix' commands"
        )),
        _ => cmd::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Failure>().map(|f| f.code).unwrap_or(1) {
                // An evaluation stopped by a build it needed ends with the build's status,
                // as CppNix's does.
                1 => eval_builds::failed_status().unwrap_or(1),
                c => c,
            };
            if let Some(f) = e.downcast_ref::<Failure>() {
                if f.silent {
                    return ExitCode::from(code);
                }
            }
            let text = firn_eval::error::error_line(&report::error_text(e.as_ref()));
            if logger::json() {
                logger::line(logger::ERROR, &text);
            } else {
                firn_eval::term::write_stderr_line(&text);
            }
            if e.downcast_ref::<UsageError>().is_some() {
                // As CppNix: the program name exactly as it was invoked.
                eprintln!("Try '{argv0} --help' for more information.");
            }
            ExitCode::from(code)
        }
    }
}
