//! Building over the `nix-store --serve` protocol, as CppNix's remote-build hook does it
//! (`builders = ssh://HOST ...`): the build options a client sends with `cmdBuildPaths` and
//! `cmdBuildDerivation`, a *basic* derivation on the wire (outputs, input sources, platform,
//! builder, arguments and environment, no input derivations) and the `BuildResult` that comes
//! back (a status code from CppNix's list, the error, times, the realisations of the outputs).
//!
//! Reading is split from checking: [`WireDerivation::read`] takes the strings off the stream
//! (so the session stays in step), [`WireDerivation::to_derivation`] then decides whether they
//! make a derivation, which a server answers with a failed build rather than a broken session.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use firn_format::derivation::{output_path_name, parse_method_algo, Derivation, DerivationOutput};
use firn_format::{Hash, StoreDir, StorePath};
use thiserror::Error;

use crate::wire::*;

/// The longest argument or environment value accepted (scripts can be long; `.drv` files
/// hold them whole as well).
pub const MAX_VALUE: u64 = 1 << 26;
/// The most outputs, arguments or environment variables in one derivation.
pub const MAX_ITEMS: u64 = 1 << 20;

fn minor(v: u64) -> u64 {
    v & 0xff
}

/// The settings a client sends with a build (CppNix's names in the comments). `0` means no
/// limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// `max-silent-time`, in seconds.
    pub max_silent_time: u64,
    /// `timeout`, in seconds.
    pub build_timeout: u64,
    /// `max-build-log-size`, in bytes (protocol 2.2 and later).
    pub max_log_size: u64,
    /// `repeat` (2.3 and later).
    pub build_repeat: u64,
    /// `enforce-determinism` (2.3 and later).
    pub enforce_determinism: bool,
    /// `keep-failed` (2.7 and later).
    pub keep_failed: bool,
}

impl BuildOptions {
    /// Read the options as a client speaking protocol `version` sends them.
    pub fn read(r: &mut dyn Read, version: u64) -> io::Result<BuildOptions> {
        let mut o = BuildOptions {
            max_silent_time: read_u64(r)?,
            build_timeout: read_u64(r)?,
            ..Default::default()
        };
        if minor(version) >= 2 {
            o.max_log_size = read_u64(r)?;
        }
        if minor(version) >= 3 {
            o.build_repeat = read_u64(r)?;
            o.enforce_determinism = read_bool(r)?;
        }
        if minor(version) >= 7 {
            o.keep_failed = read_bool(r)?;
        }
        Ok(o)
    }

    /// Write the options for a server speaking protocol `version`.
    pub fn write(&self, w: &mut dyn Write, version: u64) -> io::Result<()> {
        write_u64(w, self.max_silent_time)?;
        write_u64(w, self.build_timeout)?;
        if minor(version) >= 2 {
            write_u64(w, self.max_log_size)?;
        }
        if minor(version) >= 3 {
            write_u64(w, self.build_repeat)?;
            write_u64(w, self.enforce_determinism as u64)?;
        }
        if minor(version) >= 7 {
            write_u64(w, self.keep_failed as u64)?;
        }
        Ok(())
    }
}

/// CppNix's `BuildResult::Status`, whose numbers are part of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildStatus {
    Built = 0,
    Substituted = 1,
    AlreadyValid = 2,
    PermanentFailure = 3,
    InputRejected = 4,
    OutputRejected = 5,
    /// Possibly transient (CppNix uses it for failed fixed-output builds).
    TransientFailure = 6,
    /// No longer used.
    CachedFailure = 7,
    TimedOut = 8,
    MiscFailure = 9,
    DependencyFailed = 10,
    LogLimitExceeded = 11,
    NotDeterministic = 12,
    ResolvesToAlreadyValid = 13,
    NoSubstituters = 14,
}

impl BuildStatus {
    const ALL: [BuildStatus; 15] = [
        BuildStatus::Built,
        BuildStatus::Substituted,
        BuildStatus::AlreadyValid,
        BuildStatus::PermanentFailure,
        BuildStatus::InputRejected,
        BuildStatus::OutputRejected,
        BuildStatus::TransientFailure,
        BuildStatus::CachedFailure,
        BuildStatus::TimedOut,
        BuildStatus::MiscFailure,
        BuildStatus::DependencyFailed,
        BuildStatus::LogLimitExceeded,
        BuildStatus::NotDeterministic,
        BuildStatus::ResolvesToAlreadyValid,
        BuildStatus::NoSubstituters,
    ];

    pub fn from_code(code: u64) -> Option<BuildStatus> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    pub fn code(self) -> u64 {
        self as u64
    }

    /// Whether the outputs are valid afterwards.
    pub fn success(self) -> bool {
        matches!(
            self,
            BuildStatus::Built
                | BuildStatus::Substituted
                | BuildStatus::AlreadyValid
                | BuildStatus::ResolvesToAlreadyValid
        )
    }
}

/// The answer to `cmdBuildDerivation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildResult {
    pub status: BuildStatus,
    /// Empty on success.
    pub error_msg: String,
    /// How often the builder ran.
    pub times_built: u64,
    /// Whether repeated builds differed.
    pub non_deterministic: bool,
    /// When the builder started and stopped (seconds since the epoch; 0 if it never ran).
    pub start_time: u64,
    pub stop_time: u64,
    /// The outputs' realisations: the `DrvOutput` id (`sha256:<base16 hash modulo>!<output>`)
    /// and the realisation as CppNix's JSON.
    pub built_outputs: Vec<(String, String)>,
}

impl BuildResult {
    /// A result without a build: `status` and its message.
    pub fn new(status: BuildStatus, error_msg: impl Into<String>) -> BuildResult {
        BuildResult {
            status,
            error_msg: error_msg.into(),
            times_built: 0,
            non_deterministic: false,
            start_time: 0,
            stop_time: 0,
            built_outputs: Vec::new(),
        }
    }

    /// Write the result for a client speaking protocol `version`. (CppNix 2.8's server writes
    /// the realisations to clients of every version, by a misplaced parenthesis; later
    /// versions, and firn, only from 2.6 on, which is when clients read them.)
    pub fn write(&self, w: &mut dyn Write, version: u64) -> io::Result<()> {
        write_u64(w, self.status.code())?;
        write_string(w, &self.error_msg)?;
        if minor(version) >= 3 {
            write_u64(w, self.times_built)?;
            write_u64(w, self.non_deterministic as u64)?;
            write_u64(w, self.start_time)?;
            write_u64(w, self.stop_time)?;
        }
        if minor(version) >= 6 {
            write_u64(w, self.built_outputs.len() as u64)?;
            for (id, json) in &self.built_outputs {
                write_string(w, id)?;
                write_string(w, json)?;
            }
        }
        Ok(())
    }

    /// Read a result from a server speaking protocol `version`.
    pub fn read(r: &mut dyn Read, version: u64) -> io::Result<BuildResult> {
        let code = read_u64(r)?;
        let status = BuildStatus::from_code(code).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown build status {code}"),
            )
        })?;
        let mut res = BuildResult::new(status, read_string(r)?);
        if minor(version) >= 3 {
            res.times_built = read_u64(r)?;
            res.non_deterministic = read_bool(r)?;
            res.start_time = read_u64(r)?;
            res.stop_time = read_u64(r)?;
        }
        if minor(version) >= 6 {
            let n = read_u64(r)?;
            if n > MAX_ITEMS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{n} built outputs are too many"),
                ));
            }
            for _ in 0..n {
                let id = read_string(r)?;
                let json = read_bytes(r, MAX_VALUE)?;
                let json = String::from_utf8(json).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "realisation is not UTF-8")
                })?;
                res.built_outputs.push((id, json));
            }
        }
        Ok(res)
    }
}

/// A derivation sent by a client that is not one.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid derivation '{drv}' sent by the client: {why}")]
pub struct BadDerivation {
    pub drv: String,
    pub why: String,
}

/// One output as it comes over the wire: name, path, `[r:]algo`, hash (the `.drv` fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireOutput {
    pub name: String,
    pub path: String,
    pub hash_algo: String,
    pub hash: String,
}

/// A basic derivation as it comes over the wire, not yet checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireDerivation {
    pub outputs: Vec<WireOutput>,
    pub input_srcs: Vec<String>,
    pub platform: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

fn count(r: &mut dyn Read, what: &str) -> io::Result<u64> {
    let n = read_u64(r)?;
    if n > MAX_ITEMS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("derivation with {n} {what} is too large"),
        ));
    }
    Ok(n)
}

fn read_value(r: &mut dyn Read) -> io::Result<String> {
    String::from_utf8(read_bytes(r, MAX_VALUE)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "derivation string is not UTF-8"))
}

impl WireDerivation {
    /// Take a basic derivation off the stream (CppNix's `readDerivation`).
    pub fn read(r: &mut dyn Read) -> io::Result<WireDerivation> {
        let mut d = WireDerivation::default();
        for _ in 0..count(r, "outputs")? {
            d.outputs.push(WireOutput {
                name: read_string(r)?,
                path: read_string(r)?,
                hash_algo: read_string(r)?,
                hash: read_string(r)?,
            });
        }
        d.input_srcs = read_strings(r)?;
        d.platform = read_string(r)?;
        d.builder = read_value(r)?;
        for _ in 0..count(r, "arguments")? {
            d.args.push(read_value(r)?);
        }
        for _ in 0..count(r, "environment variables")? {
            let k = read_value(r)?;
            let v = read_value(r)?;
            d.env.push((k, v));
        }
        Ok(d)
    }

    /// The derivation these strings describe, to be built as `drv_path` (whose name, without
    /// `.drv`, is the derivation's name). Checked as CppNix reads `.drv` files: output kinds
    /// that fit together, known hash algorithms, fixed outputs' paths recomputed from their
    /// hashes, store paths in this store. An output given twice keeps its first definition, an
    /// environment variable its last (as CppNix).
    pub fn to_derivation(
        &self,
        sd: &StoreDir,
        drv_path: &StorePath,
    ) -> Result<Derivation, BadDerivation> {
        let bad = |why: String| BadDerivation {
            drv: sd.display(drv_path),
            why,
        };
        let name = drv_path
            .name()
            .strip_suffix(".drv")
            .ok_or_else(|| bad("the path does not end in '.drv'".into()))?;
        let mut drv = Derivation {
            name: name.to_string(),
            platform: self.platform.clone(),
            builder: self.builder.clone(),
            args: self.args.clone(),
            ..Default::default()
        };
        for o in &self.outputs {
            let out =
                wire_output(sd, name, o).map_err(|e| bad(format!("output '{}': {e}", o.name)))?;
            drv.outputs.entry(o.name.clone()).or_insert(out);
        }
        drv.derivation_type().map_err(|e| bad(e.to_string()))?;
        for s in &self.input_srcs {
            drv.input_srcs
                .insert(sd.parse(s).map_err(|e| bad(format!("input source: {e}")))?);
        }
        drv.env = self.env.iter().cloned().collect();
        Ok(drv)
    }
}

/// One output's fields, as CppNix's `parseDerivationOutput` takes them.
fn wire_output(sd: &StoreDir, drv_name: &str, o: &WireOutput) -> Result<DerivationOutput, String> {
    if o.name.is_empty() {
        return Err("empty output name".into());
    }
    if o.hash_algo.is_empty() {
        return Ok(if o.path.is_empty() {
            DerivationOutput::deferred()
        } else {
            DerivationOutput::input_addressed(sd.parse(&o.path).map_err(|e| e.to_string())?)
        });
    }
    let (method, algo) = parse_method_algo(&o.hash_algo)
        .map_err(|e| format!("output hash algorithm '{}': {e}", o.hash_algo))?;
    if o.hash.is_empty() || o.hash == "impure" {
        if !o.path.is_empty() {
            return Err(format!("has a path '{}' but no fixed hash", o.path));
        }
        return Ok(if o.hash.is_empty() {
            DerivationOutput::floating(method, algo)
        } else {
            DerivationOutput::impure(method, algo)
        });
    }
    if !o.path.starts_with('/') {
        return Err(format!("bad path '{}' of a fixed output", o.path));
    }
    if o.hash.contains(':') || o.hash.contains('-') {
        return Err(format!(
            "fixed output hash '{}' must be bare digits without an algorithm",
            o.hash
        ));
    }
    let hash = Hash::parse(&o.hash, Some(algo)).map_err(|e| format!("fixed output hash: {e}"))?;
    // As CppNix: only the hash counts, the path follows from it.
    let path = sd
        .make_fixed_output_path(
            &output_path_name(drv_name, &o.name),
            method,
            &hash,
            [],
            false,
        )
        .map_err(|e| e.to_string())?;
    Ok(DerivationOutput::fixed_output(method, &hash, Some(path)))
}

/// Write `drv` as a basic derivation (CppNix's `writeDerivation`; input derivations are not
/// part of it).
pub fn write_basic_derivation(
    w: &mut dyn Write,
    sd: &StoreDir,
    drv: &Derivation,
) -> io::Result<()> {
    write_u64(w, drv.outputs.len() as u64)?;
    for (name, o) in &drv.outputs {
        write_string(w, name)?;
        write_string(
            w,
            &o.path.as_ref().map(|p| sd.display(p)).unwrap_or_default(),
        )?;
        write_string(w, &o.hash_algo)?;
        write_string(w, &o.hash)?;
    }
    let srcs: Vec<String> = drv.input_srcs.iter().map(|p| sd.display(p)).collect();
    write_strings(w, srcs.iter().map(String::as_str))?;
    write_string(w, &drv.platform)?;
    write_string(w, &drv.builder)?;
    write_strings(w, drv.args.iter().map(String::as_str))?;
    write_u64(w, drv.env.len() as u64)?;
    for (k, v) in &drv.env {
        write_string(w, k)?;
        write_string(w, v)?;
    }
    Ok(())
}

/// The realisations of a built derivation's outputs, as CppNix reports them in
/// `builtOutputs`: each output's id is the derivation's hash modulo (outputs masked) in
/// base16 with `sha256:` and `!<output>`; the JSON is what CppNix's `Realisation::toJSON`
/// dumps (keys sorted, no signatures, no dependent realisations).
pub fn realisations(
    sd: &StoreDir,
    drv_path: &StorePath,
    drv: &Derivation,
    outputs: &BTreeMap<String, StorePath>,
) -> Result<Vec<(String, String)>, BadDerivation> {
    let bad = |why: String| BadDerivation {
        drv: sd.display(drv_path),
        why,
    };
    let hashes = drv
        .hash_derivation_modulo(sd, true, |p: &StorePath| {
            Err(firn_format::DrvError::Invalid(format!(
                "input derivation '{}' of a basic derivation",
                sd.display(p)
            )))
        })
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (name, path) in outputs {
        let hash = hashes
            .hashes
            .get(name)
            .ok_or_else(|| bad(format!("no hash for output '{name}'")))?;
        let id = format!("sha256:{}!{name}", hash.to_base16());
        let mut json = String::from("{\"dependentRealisations\":{},\"id\":");
        json_string(&mut json, &id);
        json.push_str(",\"outPath\":");
        json_string(&mut json, path.base_name());
        json.push_str(",\"signatures\":[]}");
        out.push((id, json));
    }
    Ok(out)
}

/// Append `s` as a JSON string, escaped as nlohmann's `dump()` does.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use firn_format::HashAlgo;

    fn sd() -> StoreDir {
        StoreDir::new("/nix/store")
    }

    fn drv_path() -> StorePath {
        sd().parse("/nix/store/00000000000000000000000000000000-hello.drv")
            .unwrap()
    }

    fn sample() -> Derivation {
        let sd = sd();
        let mut d = Derivation {
            name: "hello".into(),
            platform: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec!["-c".into(), "echo hi > $out".into()],
            ..Default::default()
        };
        let out = sd
            .parse("/nix/store/11111111111111111111111111111111-hello")
            .unwrap();
        d.outputs
            .insert("out".into(), DerivationOutput::input_addressed(out));
        d.input_srcs.insert(
            sd.parse("/nix/store/22222222222222222222222222222222-src")
                .unwrap(),
        );
        d.env.insert(
            "out".into(),
            "/nix/store/11111111111111111111111111111111-hello".into(),
        );
        d.env.insert("weird".into(), "a\nb\"c".into());
        d
    }

    #[test]
    fn basic_derivation_roundtrip() {
        let d = sample();
        let mut buf = Vec::new();
        write_basic_derivation(&mut buf, &sd(), &d).unwrap();
        let wire = WireDerivation::read(&mut &buf[..]).unwrap();
        assert_eq!(wire.to_derivation(&sd(), &drv_path()).unwrap(), d);
    }

    #[test]
    fn fixed_output_path_follows_the_hash() {
        let sd = sd();
        let h = Hash::digest(HashAlgo::Sha256, "x");
        let wire = WireDerivation {
            outputs: vec![WireOutput {
                name: "out".into(),
                // Whatever the client says, the path is recomputed.
                path: "/nix/store/33333333333333333333333333333333-wrong".into(),
                hash_algo: "r:sha256".into(),
                hash: h.to_base16(),
            }],
            platform: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            ..Default::default()
        };
        let d = wire.to_derivation(&sd, &drv_path()).unwrap();
        let want = sd
            .make_fixed_output_path(
                "hello",
                firn_format::FileIngestionMethod::Recursive,
                &h,
                [],
                false,
            )
            .unwrap();
        assert_eq!(d.outputs["out"].path.as_ref(), Some(&want));
        assert!(d.is_fixed_output());
    }

    #[test]
    fn bad_derivations_are_refused() {
        let sd = sd();
        let base = WireDerivation::read(
            &mut &{
                let mut b = Vec::new();
                write_basic_derivation(&mut b, &sd, &sample()).unwrap();
                b
            }[..],
        )
        .unwrap();
        let refused = |f: &dyn Fn(&mut WireDerivation), what: &str| {
            let mut w = base.clone();
            f(&mut w);
            let e = w.to_derivation(&sd, &drv_path()).unwrap_err();
            assert!(e.to_string().contains(what), "{e} lacks {what}");
        };
        refused(
            &|w| {
                w.outputs[0].hash_algo = "md7".into();
                w.outputs[0].hash = "abcd".into();
            },
            "output hash algorithm 'md7'",
        );
        refused(&|w| w.outputs.clear(), "at least one output");
        refused(&|w| w.input_srcs.push("/tmp/x".into()), "input source");
        refused(
            &|w| w.outputs[0].path = "/nix/store/not-a-hash".into(),
            "output 'out'",
        );
        refused(
            &|w| {
                w.outputs[0].hash_algo = "sha256".into();
                w.outputs[0].hash = "sha256:00".into();
            },
            "bare digits",
        );
        refused(
            &|w| {
                w.outputs[0].hash_algo = "sha256".into();
                w.outputs[0].hash = "0011".into();
            },
            "fixed output hash",
        );
        let not_drv = sd
            .parse("/nix/store/00000000000000000000000000000000-hello")
            .unwrap();
        assert!(base.to_derivation(&sd, &not_drv).is_err());
        // A count beyond the limits is a read error, before any allocation.
        let mut huge = Vec::new();
        write_u64(&mut huge, u64::MAX).unwrap();
        assert!(WireDerivation::read(&mut &huge[..]).is_err());
    }

    #[test]
    fn options_and_results_by_version() {
        let o = BuildOptions {
            max_silent_time: 1,
            build_timeout: 2,
            max_log_size: 3,
            build_repeat: 4,
            enforce_determinism: true,
            keep_failed: true,
        };
        for (v, len) in [(0x200, 16), (0x202, 24), (0x203, 40), (0x207, 48)] {
            let mut b = Vec::new();
            o.write(&mut b, v).unwrap();
            assert_eq!(b.len(), len, "{v:#x}");
            let back = BuildOptions::read(&mut &b[..], v).unwrap();
            assert_eq!(back.max_silent_time, 1);
            assert_eq!(back.keep_failed, v >= 0x207);
        }
        let mut r = BuildResult::new(BuildStatus::Built, "");
        r.times_built = 1;
        r.start_time = 10;
        r.stop_time = 11;
        r.built_outputs = vec![("sha256:00!out".into(), "{}".into())];
        for v in [0x202, 0x205, 0x207] {
            let mut b = Vec::new();
            r.write(&mut b, v).unwrap();
            let back = BuildResult::read(&mut &b[..], v).unwrap();
            assert!(back.status.success());
            assert_eq!(back.times_built, if v >= 0x203 { 1 } else { 0 });
            assert_eq!(back.built_outputs.len(), if v >= 0x206 { 1 } else { 0 });
        }
        assert_eq!(BuildStatus::from_code(9), Some(BuildStatus::MiscFailure));
        assert_eq!(BuildStatus::from_code(15), None);
    }

    #[test]
    fn realisation_json_is_cppnix_s() {
        let d = sample();
        let outs: BTreeMap<String, StorePath> = d
            .outputs
            .iter()
            .map(|(n, o)| (n.clone(), o.path.clone().unwrap()))
            .collect();
        let r = realisations(&sd(), &drv_path(), &d, &outs).unwrap();
        let h = d.hash_modulo(&sd(), true, |_| unreachable!()).unwrap();
        let id = format!("sha256:{}!out", h.to_base16());
        assert_eq!(
            r,
            vec![(
                id.clone(),
                format!(
                    "{{\"dependentRealisations\":{{}},\"id\":\"{id}\",\"outPath\":\"11111111111111111111111111111111-hello\",\"signatures\":[]}}"
                )
            )]
        );
        let mut s = String::new();
        json_string(&mut s, "a\"\\\n\u{1}é");
        assert_eq!(s, "\"a\\\"\\\\\\n\\u0001é\"");
    }
}
