//! `nix develop` and `nix print-dev-env`, as CppNix 2.8's: the installable's derivation
//! (`devShells.SYSTEM.default` first for a flake) is copied into one whose builder, bash,
//! runs firn's environment dump (`get_env.sh`) instead of the build, with no reference
//! checks, named `NAME-env`, its output paths computed anew; that derivation is built and
//! its output read: the build's shell variables and functions as JSON. From it comes a bash
//! script that recreates the environment (CppNix's `makeRcScript`: the variables but those
//! of the session, the functions, `PATH` kept after the build's, a fresh `NIX_BUILD_TOP`,
//! then `shellHook`; output paths pointing into `./outputs/`), which `print-dev-env`
//! prints (`--json`: the environment) and `develop` runs bash with: interactively, or for
//! `--command` or a stdenv `--phase`. The bash is nixpkgs' `bashInteractive` (from the
//! flake's `nixpkgs` input or the registries) when it can be had, else `bash` from `PATH`.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use clap::Args;
use firn_build::DerivedPath;
use firn_format::StorePath;
use firn_store::LocalStore;

use crate::cmd::build::SourceArgs;
use crate::context::Ctx;

/// The environment dump the derivation's builder runs.
const GET_ENV: &str = include_str!("get_env.sh");

/// Variables of the build that are the session's, not the environment's.
const IGNORED: [&str; 16] = [
    "BASHOPTS",
    "HOME",
    "NIX_BUILD_TOP",
    "NIX_ENFORCE_PURITY",
    "NIX_LOG_FD",
    "NIX_REMOTE",
    "PPID",
    "SHELLOPTS",
    "SSL_CERT_FILE",
    "TEMP",
    "TEMPDIR",
    "TERM",
    "TMP",
    "TMPDIR",
    "TZ",
    "UID",
];

#[derive(Args, Debug)]
pub struct DevelopArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Run this command with its arguments instead of an interactive shell.
    #[arg(short = 'c', long = "command", num_args = 1.., allow_hyphen_values = true)]
    command: Vec<String>,
    /// Run this stdenv phase (e.g. `build` or `configure`).
    #[arg(long, value_name = "PHASE_NAME")]
    phase: Option<String>,
    /// Run the `unpack` phase.
    #[arg(long)]
    unpack: bool,
    /// Run the `configure` phase.
    #[arg(long)]
    configure: bool,
    /// Run the `build` phase.
    #[arg(long)]
    build: bool,
    /// Run the `check` phase.
    #[arg(long)]
    check: bool,
    /// Run the `install` phase.
    #[arg(long)]
    install: bool,
    /// Run the `installCheck` phase.
    #[arg(long)]
    installcheck: bool,
    /// Clear the environment, but for the variables `--keep` names.
    #[arg(short = 'i', long)]
    ignore_environment: bool,
    /// Keep this environment variable (with `--ignore-environment`).
    #[arg(short = 'k', long, value_name = "NAME")]
    keep: Vec<String>,
    /// Unset this environment variable.
    #[arg(short = 'u', long, value_name = "NAME")]
    unset: Vec<String>,
    /// The installable (default `.`).
    installable: Option<String>,
}

#[derive(Args, Debug)]
pub struct PrintDevEnvArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print the environment as JSON.
    #[arg(long)]
    json: bool,
    /// The installable (default `.`).
    installable: Option<String>,
}

/// `nix print-dev-env`.
pub fn print_dev_env(ctx: &Ctx, a: PrintDevEnvArgs) -> Result<()> {
    let installable = a.installable.unwrap_or_else(|| ".".into());
    let (env, _, _) = environment(ctx, &a.source, &installable)?;
    let text = match a.json {
        true => firn_format::json::sort_json(&env).to_string(),
        false => rc_script(&env)?,
    };
    firn_eval::term::write_stdout(&text, true)?;
    Ok(())
}

/// `nix develop`.
pub fn develop(ctx: &Ctx, a: DevelopArgs) -> Result<()> {
    let flags = [
        (a.unpack, "unpack"),
        (a.configure, "configure"),
        (a.build, "build"),
        (a.check, "check"),
        (a.install, "install"),
        (a.installcheck, "installCheck"),
    ];
    let phase = flags
        .iter()
        .rev()
        .find(|(on, _)| *on)
        .map(|(_, p)| p.to_string())
        .or(a.phase.clone());
    if phase.is_some() && !a.command.is_empty() {
        bail!("you cannot use both '--command' and '--phase'");
    }
    let installable = a.installable.clone().unwrap_or_else(|| ".".into());
    let (env, env_path, store) = environment(ctx, &a.source, &installable)?;
    let rc_path = startup_file()?;
    let mut script = rc_script(&env)?;
    if ctx.verbosity >= 2 {
        script.push_str("set -x\n");
    }
    script.push_str(&format!("command rm -f {}\n", shell_escape(&rc_path)));
    if let Some(phase) = &phase {
        script.push_str("foundMakefile=1\n");
        script.push_str(&format!("runHook {phase}Phase\n"));
    } else if !a.command.is_empty() {
        let words: Vec<String> = a.command.iter().map(|w| shell_escape(w)).collect();
        script.push_str(&format!("exec {}\n", words.join(" ")));
    } else {
        script.insert_str(
            0,
            "[ -n \"$PS1\" ] && [ -e ~/.bashrc ] && source ~/.bashrc;\n",
        );
        let settings = ctx.with_flake_config().settings;
        for (setting, op) in [("bash-prompt", "="), ("bash-prompt-suffix", "+=")] {
            if let Some(v) = settings.get(setting).filter(|v| !v.is_empty()) {
                script.push_str(&format!("[ -n \"$PS1\" ] && PS1{op}{};\n", shell_escape(v)));
            }
        }
    }
    std::fs::write(&rc_path, script).with_context(|| format!("writing '{rc_path}'"))?;
    apply_environment(&a)?;
    // The environment stays alive while the shell runs (CppNix's variable).
    std::env::set_var("NIX_GCROOT", &env_path);
    let shell = interactive_bash(ctx, &a.source, &installable);
    let args: Vec<String> = match phase.is_some() || !a.command.is_empty() {
        true => vec![rc_path],
        false => vec!["--rcfile".into(), rc_path],
    };
    crate::cmd::run::exec_in_store(&store, &shell, &args, None)
}

/// A new file for the shell's startup script, `$TMPDIR/nix-shellXXXXXX`.
fn startup_file() -> Result<String> {
    let (_, path) = tempfile::Builder::new()
        .prefix("nix-shell")
        .tempfile()
        .context("creating the shell's startup file")?
        .keep()
        .context("keeping the shell's startup file")?;
    Ok(path.to_string_lossy().into_owned())
}

/// `--ignore-environment`, `--keep` and `--unset` (CppNix's `MixEnvironment`).
fn apply_environment(a: &DevelopArgs) -> Result<()> {
    if a.ignore_environment {
        let keep: BTreeSet<&str> = a.keep.iter().map(String::as_str).collect();
        for (name, _) in std::env::vars_os() {
            if !keep.contains(name.to_string_lossy().as_ref()) {
                std::env::remove_var(&name);
            }
        }
    }
    for name in &a.unset {
        std::env::remove_var(name);
    }
    Ok(())
}

/// The build environment of `installable`: the JSON its environment derivation made, that
/// output's path, and the store.
fn environment(
    ctx: &Ctx,
    source: &SourceArgs,
    installable: &str,
) -> Result<(serde_json::Value, String, LocalStore)> {
    let (drv, store) = derivation_of(ctx, source, installable)?;
    let sd = store.store_dir().clone();
    let env_drv = environment_derivation(&store, &drv)?;
    crate::realise::realise(
        &ctx.with_flake_config(),
        &store,
        &[DerivedPath::Built {
            drv: env_drv.clone(),
            outputs: None,
        }],
        &crate::realise::BuildFlags::default(),
    )?;
    let wanted = DerivedPath::Built {
        drv: env_drv,
        outputs: None,
    };
    for (_, out) in crate::realise::built_outputs(&store, &wanted)? {
        let real = store.real_path(&out);
        let text = std::fs::read_to_string(&real)
            .with_context(|| format!("reading '{}'", real.display()))?;
        if text.is_empty() {
            continue;
        }
        let env: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("reading the environment in '{}'", sd.display(&out)))?;
        return Ok((env, sd.display(&out), store));
    }
    bail!("the environment dump failed to produce an environment")
}

/// The derivation `installable` evaluates to (a flake's `devShells.SYSTEM.default` first).
fn derivation_of(
    ctx: &Ctx,
    source: &SourceArgs,
    installable: &str,
) -> Result<(StorePath, LocalStore)> {
    let source = source.eval_source(&source.lock)?;
    let name = installable.to_string();
    let (drv, store) = crate::cmd::run::eval_installable(
        ctx,
        installable,
        &source,
        firn_eval::flake::Wanted::DevShell,
        move |ev, v| drv_path_of(ev, &name, &v),
    )?;
    let drv = store.store_dir().parse(&drv)?;
    Ok((drv, store))
}

/// The `drvPath` of `v`, which must be a derivation.
fn drv_path_of(
    ev: &mut firn_eval::Evaluator,
    installable: &str,
    v: &firn_eval::Value,
) -> Result<String, firn_eval::error::EvalError> {
    use firn_eval::error::EvalError;
    let set = match v {
        firn_eval::Value::Attrs(set) if ev.is_derivation(set)? => set.clone(),
        _ => {
            return Err(EvalError::new(format!(
                "'{installable}' needs to evaluate to a single derivation, but it evaluated to 0 derivations"
            )))
        }
    };
    let t = set
        .get("drvPath")
        .ok_or_else(|| EvalError::new("attribute 'drvPath' missing"))?
        .clone();
    let p = ev.force(&t)?;
    Ok(ev.coerce_to_string(&p, false, false)?.s.to_string())
}

/// The derivation that dumps `drv`'s build environment (CppNix's
/// `getDerivationEnvironment`), written to the store.
fn environment_derivation(store: &LocalStore, drv_path: &StorePath) -> Result<StorePath> {
    let sd = store.store_dir().clone();
    let mut drv = crate::closure::read_derivation(store, drv_path)?;
    if drv.builder.rsplit('/').next() != Some("bash") {
        bail!("'nix develop' only works on derivations that use 'bash' as their builder");
    }
    let script = store.add_text("get-env.sh", GET_ENV.as_bytes(), &BTreeSet::new())?;
    drv.args = vec![sd.display(&script)];
    for check in [
        "allowedReferences",
        "allowedRequisites",
        "disallowedReferences",
        "disallowedRequisites",
    ] {
        drv.env.remove(check);
    }
    drv.name.push_str("-env");
    drv.input_srcs.insert(script);
    let mut hashes = firn_format::derivation::DrvHashes::new();
    hashes
        .compute_output_paths(&sd, &mut drv, |p: &StorePath| {
            crate::closure::read_derivation(store, p)
        })
        .with_context(|| format!("computing the outputs of '{}-env'", drv_path.name()))?;
    let text = drv.to_aterm(&sd);
    let refs = drv.references();
    Ok(store.add_text(&format!("{}.drv", drv.name), text.as_bytes(), &refs)?)
}

/// CppNix's `makeRcScript`: bash that sets the environment `env` up (see the module's
/// header); output paths point into `./outputs/NAME`.
fn rc_script(env: &serde_json::Value) -> Result<String> {
    let empty = serde_json::Map::new();
    let vars = env["variables"].as_object().unwrap_or(&empty);
    let functions = env["bashFunctions"].as_object().unwrap_or(&empty);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut out = String::from("unset shellHook\nnix_saved_PATH=\"$PATH\"\n");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        if IGNORED.contains(&name.as_str()) {
            continue;
        }
        let info = &vars[name];
        let value = &info["value"];
        match info["type"].as_str().unwrap_or_default() {
            t @ ("exported" | "var") => {
                out.push_str(&format!("{name}={}\n", shell_escape(&text(value))));
                if t == "exported" {
                    out.push_str(&format!("export {name}\n"));
                }
            }
            "array" => {
                out.push_str(&format!("declare -a {name}=("));
                for item in value.as_array().into_iter().flatten() {
                    out.push_str(&shell_escape(&text(item)));
                    out.push(' ');
                }
                out.push_str(")\n");
            }
            "associative" => {
                out.push_str(&format!("declare -A {name}=("));
                let mut keys: Vec<(&String, &serde_json::Value)> =
                    value.as_object().into_iter().flatten().collect();
                keys.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in keys {
                    out.push_str(&format!(
                        "[{}]={} ",
                        shell_escape(k),
                        shell_escape(&text(v))
                    ));
                }
                out.push_str(")\n");
            }
            other => bail!("variable '{name}' of the environment has an unknown type '{other}'"),
        }
    }
    let mut fnames: Vec<&String> = functions.keys().collect();
    fnames.sort();
    for name in fnames {
        out.push_str(&format!("{name} ()\n{{\n{}}}\n", text(&functions[name])));
    }
    out.push_str("PATH=\"$PATH:$nix_saved_PATH\"\n");
    out.push_str("export NIX_BUILD_TOP=\"$(mktemp -d -t nix-shell.XXXXXX)\"\n");
    for v in ["TMP", "TMPDIR", "TEMP", "TEMPDIR"] {
        out.push_str(&format!("export {v}=\"$NIX_BUILD_TOP\"\n"));
    }
    out.push_str("eval \"$shellHook\"\n");
    // The outputs' paths (the `outputs` variable names them) point into `./outputs`.
    let outputs_dir = format!("{}/outputs", crate::paths::cwd()?);
    let outputs: Vec<String> = match vars.get("outputs").map(|o| &o["value"]) {
        Some(serde_json::Value::String(s)) => s.split_whitespace().map(String::from).collect(),
        Some(serde_json::Value::Array(a)) => a.iter().map(text).collect(),
        Some(serde_json::Value::Object(o)) => o.keys().cloned().collect(),
        _ => bail!("the environment has no 'outputs'"),
    };
    let mut rewrites: Vec<(String, String)> = Vec::new();
    for name in outputs {
        let from = vars
            .get(&name)
            .and_then(|v| v["value"].as_str())
            .with_context(|| format!("the environment has no output '{name}'"))?;
        rewrites.push((from.to_string(), format!("{outputs_dir}/{name}")));
    }
    Ok(rewrite(&out, &rewrites))
}

/// `s` with each `from` replaced by its `to`, all at once (CppNix's `rewriteStrings`:
/// replacement after replacement, in order of the `from` strings).
fn rewrite(s: &str, rewrites: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        rewrites.iter().filter(|(f, _)| !f.is_empty()).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = s.to_string();
    for (from, to) in sorted {
        out = out.replace(from.as_str(), to);
    }
    out
}

/// `s` as one word of bash, in single quotes (CppNix's `shellEscape`).
fn shell_escape(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// CppNix's shell for `nix develop`: nixpkgs' `bashInteractive`, from the flake's own
/// `nixpkgs` input or the registries' `nixpkgs`, built; if that fails (shown as an ignored
/// error), `bash` from `PATH`.
fn interactive_bash(ctx: &Ctx, source: &SourceArgs, installable: &str) -> String {
    let flake = source
        .is_flake()
        .then(|| installable.split('#').next().unwrap_or(".").to_string());
    let lock = source.lock.for_nixpkgs(flake);
    let found = (|| -> Result<String> {
        let nixpkgs = crate::cmd::run::EvalSource {
            from: None,
            impure: false,
            ..source.eval_source(&lock)?
        };
        let (drv, store) = crate::cmd::run::eval_installable(
            ctx,
            "nixpkgs#bashInteractive",
            &nixpkgs,
            firn_eval::flake::Wanted::Package,
            |ev, v| drv_path_of(ev, "nixpkgs#bashInteractive", &v),
        )?;
        let wanted = DerivedPath::Built {
            drv: store.store_dir().parse(&drv)?,
            outputs: Some(["out".to_string()].into()),
        };
        crate::realise::realise(
            &ctx.with_flake_config(),
            &store,
            std::slice::from_ref(&wanted),
            &crate::realise::BuildFlags::default(),
        )?;
        let (_, out) = crate::realise::built_outputs(&store, &wanted)?
            .into_iter()
            .next()
            .context("bashInteractive has no output")?;
        Ok(format!("{}/bin/bash", store.store_dir().display(&out)))
    })();
    match found {
        Ok(bash) => bash,
        Err(e) => {
            firn_eval::term::write_stderr_line(&format!(
                "error (ignored): error: {}",
                crate::report::error_text(e.as_ref())
            ));
            "bash".into()
        }
    }
}
