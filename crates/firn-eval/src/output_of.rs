//! `builtins.outputOf` (the `dynamic-derivations` experimental feature): the path of an
//! output of a derivation given as a string, where that derivation may itself be the output
//! of a build. Also what reads context elements that name such nested outputs.
//!
//! A context element names a store path (`/nix/store/…`), a derivation with everything it
//! needs (`=/nix/store/….drv`), or an output of a derivation (`!out!/nix/store/….drv`). The
//! derivation of a built output may itself be built: `!dev!out!/nix/store/….drv` is output
//! `dev` of the derivation that is output `out` of `….drv` (outer outputs first). In text
//! such a path is written `/nix/store/….drv^out^dev` (innermost first).
//!
//! The string of an output is its store path when that is known before building (an
//! input-addressed or fixed-output derivation); otherwise it is a placeholder that building
//! replaces: for an output of a derivation in the store, the one `derivation` gives its
//! floating and deferred outputs; for an output of a derivation that is itself built, one
//! computed from the placeholder of that derivation
//! ([`firn_format::derivation::computed_output_placeholder_hash`]).

use std::collections::BTreeSet;

use firn_format::derivation::{
    computed_output_placeholder_hash, downstream_placeholder_hash, placeholder_text,
};
use firn_format::{Hash, StorePath};

use crate::builtins::{string, text_frame, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::value::*;

/// A store path, or an output of a derivation that is one of these (current Nix's "single
/// derived path").
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Derived {
    /// A path in the store (for the derivation of an output: a `.drv`).
    Opaque(StorePath),
    /// Output `.1` of the derivation `.0` stands for.
    Built(Box<Derived>, String),
}

/// One element of a string's context, read.
enum ContextElem {
    /// `=P`: the derivation `P` with its closure and all outputs.
    DrvDeep,
    /// A plain path, or an output (of an output …) of a derivation.
    Single(Derived),
}

/// Read a context element (one the evaluator made, so only store paths can be wrong).
fn parse_elem(ev: &Evaluator, c: &str) -> EResult<ContextElem> {
    if c.starts_with('=') {
        return Ok(ContextElem::DrvDeep);
    }
    match c.strip_prefix('!') {
        Some(rest) if rest.contains('!') => Ok(ContextElem::Single(parse_built(ev, rest)?)),
        Some(_) => err(format!("invalid string context element '{c}'")),
        None => Ok(ContextElem::Single(Derived::Opaque(store_path(ev, c)?))),
    }
}

/// `OUT!…!OUT1!/nix/store/….drv` (outer outputs first) as a [`Derived`].
pub(crate) fn parse_built(ev: &Evaluator, s: &str) -> EResult<Derived> {
    let mut parts = s.rsplit('!');
    let path = parts.next().unwrap_or_default();
    let mut d = Derived::Opaque(store_path(ev, path)?);
    for output in parts {
        d = Derived::Built(Box::new(d), output.to_string());
    }
    Ok(d)
}

fn store_path(ev: &Evaluator, s: &str) -> EResult<StorePath> {
    ev.store
        .dir
        .parse(s)
        .map_err(|e| EvalError::new(format!("'{s}' is not a valid store path: {e}")))
}

impl Derived {
    /// As text: the path, then `^output` for each level (innermost first).
    pub(crate) fn display(&self, ev: &Evaluator) -> String {
        match self {
            Derived::Opaque(p) => ev.store.dir.display(p),
            Derived::Built(d, o) => format!("{}^{o}", d.display(ev)),
        }
    }

    /// As a context element.
    fn context_elem(&self, ev: &Evaluator) -> String {
        match self {
            Derived::Opaque(p) => ev.store.dir.display(p),
            Derived::Built(..) => {
                let mut s = String::from("!");
                let mut d = self;
                while let Derived::Built(inner, o) = d {
                    s.push_str(o);
                    s.push('!');
                    d = inner;
                }
                s.push_str(&d.context_elem(ev));
                s
            }
        }
    }
}

/// The error of an experimental feature that is off, in current Nix's words.
fn feature_off(name: &str) -> EvalError {
    EvalError::new(format!(
        "experimental Nix feature '{name}' is disabled; add '--extra-experimental-features {name}' to enable it"
    ))
}

/// The placeholder hash of output `output` of the derivation `drv` stands for, when that
/// output's path is not known before building.
fn placeholder_hash(ev: &Evaluator, drv: &Derived, output: &str) -> EResult<Hash> {
    match drv {
        Derived::Opaque(p) => {
            if !ev.features.ca_derivations {
                return Err(feature_off("ca-derivations"));
            }
            let name = p.name();
            let name = name.strip_suffix(".drv").unwrap_or(name);
            Ok(downstream_placeholder_hash(p, name, output))
        }
        Derived::Built(inner, o) => {
            if !ev.features.dynamic_derivations {
                return Err(feature_off("dynamic-derivations"));
            }
            let h = placeholder_hash(ev, inner, o)?;
            Ok(computed_output_placeholder_hash(&h, output))
        }
    }
}

/// Output `output` of the derivation at `drv`: `None` if it has none of that name, else its
/// path if that is known before building.
fn static_output(
    ev: &Evaluator,
    drv: &StorePath,
    output: &str,
) -> EResult<Option<Option<StorePath>>> {
    if !drv.is_derivation() {
        return err(format!(
            "error parsing derivation '{}': store path '{}' is not a valid derivation path",
            ev.store.dir.display(drv),
            drv.base_name()
        ));
    }
    ev.store.output_path(drv, output)
}

/// The string that stands for `d`: its store path, or for an output whose path is not known
/// yet, its placeholder (current Nix's `mkSingleDerivedPathStringRaw`).
fn derived_string(ev: &Evaluator, d: &Derived) -> EResult<String> {
    match d {
        Derived::Opaque(p) => Ok(ev.store.dir.display(p)),
        Derived::Built(inner, output) => {
            if let Derived::Opaque(drv) = &**inner {
                match static_output(ev, drv, output)? {
                    None => {
                        return err(format!(
                            "derivation '{}' does not have output '{output}'",
                            ev.store.dir.display(drv)
                        ))
                    }
                    Some(Some(p)) => return Ok(ev.store.dir.display(&p)),
                    Some(None) => {}
                }
            }
            Ok(placeholder_text(&placeholder_hash(ev, inner, output)?))
        }
    }
}

const FIRST: &str = "while evaluating the first argument to builtins.outputOf";
const SECOND: &str = "while evaluating the second argument to builtins.outputOf";

/// The argument of `outputOf` as the path it stands for (current Nix's
/// `coerceToSingleDerivedPath`): a string whose context is one plain path or one output, and
/// whose text is what that stands for.
fn single_derived_path(ev: &mut Evaluator, t: &Thunk) -> EResult<Derived> {
    let s = string(ev, t).map_err(|x| text_frame(x, FIRST))?;
    let elems: BTreeSet<&str> = s.context.iter().map(|c| c.as_str()).collect();
    if elems.len() != 1 {
        return Err(text_frame(
            EvalError::new(format!(
                "string '{}' has {} entries in its context. It should only have exactly one entry",
                s.s,
                elems.len()
            )),
            FIRST,
        ));
    }
    let c = elems.first().copied().unwrap_or_default();
    let d = match parse_elem(ev, c)? {
        ContextElem::DrvDeep => {
            return Err(text_frame(
                EvalError::new(format!(
                    "string '{}' has a context which refers to a complete source and binary closure. This is not supported at this time",
                    s.s
                )),
                FIRST,
            ))
        }
        ContextElem::Single(d) => d,
    };
    // As in current Nix, an error finding what the string should be has no frame.
    let expected = derived_string(ev, &d)?;
    if s.s.as_str() != expected {
        let msg = match &d {
            Derived::Opaque(_) => {
                format!("path string '{}' has context with the different path '{expected}'", s.s)
            }
            Derived::Built(inner, o) => format!(
                "string '{}' has context with the output '{o}' from derivation '{}', but the string is not the right placeholder for this derivation output. It should be '{expected}'",
                s.s,
                inner.display(ev)
            ),
        };
        return Err(text_frame(EvalError::new(msg), FIRST));
    }
    Ok(d)
}

/// `builtins.outputOf drvRef output`.
fn output_of(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let drv = single_derived_path(ev, &a[0])?;
    let output = string(ev, &a[1])
        .and_then(crate::eval::no_context)
        .map_err(|x| text_frame(x, SECOND))?;
    let d = Derived::Built(Box::new(drv), output.as_str().to_owned());
    let s = derived_string(ev, &d)?;
    let c = d.context_elem(ev);
    Ok(Value::String(NixString::with_context(s, vec![c.into()])))
}

/// The derivation an output of an output stands for (`OUT!…!/nix/store/….drv`, the part of
/// a context element after its outer output), for `getContext`, which names a context by a
/// store path. Only a path known before building is found: realisations of built outputs are
/// not looked up, so an output whose path is not known yet is current Nix's error for an
/// unbuilt output.
pub(crate) fn resolved_drv(ev: &Evaluator, inner: &str) -> EResult<String> {
    fn resolve(ev: &Evaluator, d: &Derived) -> EResult<StorePath> {
        match d {
            Derived::Opaque(p) => Ok(p.clone()),
            Derived::Built(inner, o) => {
                let drv = resolve(ev, inner)?;
                match static_output(ev, &drv, o)? {
                    Some(Some(p)) => Ok(p),
                    Some(None) => {
                        let mut x = EvalError::new(format!(
                            "cannot operate on output '{o}' of the unbuilt derivation '{}'",
                            ev.store.dir.display(&drv)
                        ));
                        x.trace.push(format!(
                            "looking up realisation for derivation '{}'",
                            inner.display(ev)
                        ));
                        Err(x)
                    }
                    None => err(format!(
                        "derivation '{}' does not have an output named '{o}'",
                        ev.store.dir.display(&drv)
                    )),
                }
            }
        }
    }
    let d = parse_built(ev, inner)?;
    Ok(ev.store.dir.display(&resolve(ev, &d)?))
}

/// The error of `derivation` for an input that is an output of a derivation that is itself
/// built (`c` is the context element): current Nix writes such inputs in a `.drv` form of its
/// own (`DrvWithVersion("xp-dyn-drv", …)`) that firn does not write (or read) yet.
#[cold]
#[inline(never)]
pub(crate) fn dynamic_input_error(ev: &Evaluator, c: &str) -> EvalError {
    let shown = match c.strip_prefix('!').map(|rest| parse_built(ev, rest)) {
        Some(Ok(d)) => d.display(ev),
        _ => c.to_string(),
    };
    EvalError::new(format!(
        "cannot use '{shown}' as an input: it is an output of a derivation that is itself built \
         (dynamic derivations), and firn cannot write such an input into a .drv file yet (it \
         needs the 'xp-dyn-drv' derivation format)"
    ))
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("outputOf", 2, output_of)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Features;
    use firn_format::derivation::downstream_placeholder;

    /// Both features a dynamic derivation needs (placeholders of outputs whose path is not
    /// known are a `ca-derivations` thing).
    const BOTH: &str = "ca-derivations dynamic-derivations";

    /// Derivations to refer to: `d` input-addressed with two outputs, `ca` floating
    /// content-addressed, `fixed` fixed-output; `*Ref` their `.drv` paths as plain paths.
    fn with_drvs(features: &str, body: &str) -> String {
        let ca = if features.contains("ca-derivations") {
            r#"mk { name = "ca"; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; }"#
        } else {
            "throw \"no ca\""
        };
        format!(
            r#"let
  mk = attrs: derivation ({{ builder = "/bin/sh"; system = "x86_64-linux"; }} // attrs);
  d = mk {{ name = "a"; outputs = [ "out" "dev" ]; }};
  ca = {ca};
  fixed = mk {{ name = "f"; outputHashAlgo = "sha256"; outputHash = builtins.hashString "sha256" "x"; }};
  ref = builtins.unsafeDiscardOutputDependency d.drvPath;
  caRef = builtins.unsafeDiscardOutputDependency ca.drvPath;
  fixedRef = builtins.unsafeDiscardOutputDependency fixed.drvPath;
  outputOf = builtins.outputOf;
in {body}"#
        )
    }

    fn eval_value(features: &str, text: &str) -> EResult<(Evaluator, Value)> {
        let mut ev = Evaluator::with_features(Features::from_names(features));
        let e = ev.parse(text, "«test»", "/")?;
        let v = ev.eval_top(e)?;
        crate::builtins::deep_force(&mut ev, &v)?;
        Ok((ev, v))
    }

    /// The printed value of `body` (see [`with_drvs`]).
    fn run(features: &str, body: &str) -> Result<String, EvalError> {
        let (mut ev, v) = eval_value(features, &with_drvs(features, body))?;
        crate::print::print_value(&mut ev, &v, true)
    }

    /// The error of `body`: its message and its frames.
    fn fail(features: &str, body: &str) -> (String, Vec<String>) {
        match run(features, body) {
            Ok(v) => panic!("{body}: no error but {v}"),
            Err(x) => (x.msg.clone(), x.trace.clone()),
        }
    }

    /// The string `body` gives, with its context.
    fn string_of(features: &str, body: &str) -> (String, Vec<String>) {
        match eval_value(features, &with_drvs(features, body)) {
            Ok((_, Value::String(s))) => (
                s.s.as_str().to_owned(),
                s.context.iter().map(|c| c.as_str().to_owned()).collect(),
            ),
            Ok(_) => panic!("{body}: not a string"),
            Err(x) => panic!("{body}: {}", x.render(true)),
        }
    }

    const FIRST_FRAME: &str = "while evaluating the first argument to builtins.outputOf";

    /// Whether an error has a frame of an argument of `outputOf` (some errors have none, as
    /// in current Nix; all have the evaluator's "while calling the 'outputOf' builtin").
    fn has_arg_frame(trace: &[String]) -> bool {
        trace
            .iter()
            .any(|f| f.contains("argument to builtins.outputOf"))
    }

    #[test]
    fn absent_without_the_feature() {
        let (_, v) = eval_value("ca-derivations", "builtins ? outputOf").unwrap();
        assert!(matches!(v, Value::Bool(false)));
        let Err(x) = eval_value("", "__outputOf") else {
            panic!("__outputOf without the feature")
        };
        assert_eq!(x.msg, "undefined variable '__outputOf'");
        let (_, v) = eval_value(
            "dynamic-derivations",
            "builtins ? outputOf && builtins.isFunction __outputOf",
        )
        .unwrap();
        assert!(matches!(v, Value::Bool(true)));
    }

    /// An input-addressed or fixed-output derivation's output: its store path, with the
    /// context of that output (what `drv.outPath` is), without `ca-derivations`.
    #[test]
    fn statically_known_outputs_are_their_store_paths() {
        for features in ["dynamic-derivations", BOTH] {
            assert_eq!(
                run(
                    features,
                    r#"[ (outputOf ref "out" == d.outPath) (outputOf ref "dev" == d.dev.outPath)
                         (outputOf fixedRef "out" == fixed.outPath) ]"#
                )
                .unwrap(),
                "[ true true true ]"
            );
            let (s, ctx) = string_of(features, r#"outputOf ref "dev""#);
            let (path, path_ctx) = string_of(features, "d.dev.outPath");
            assert!(s.starts_with("/nix/store/") && s.ends_with("-a-dev"), "{s}");
            assert_eq!((&s, &ctx), (&path, &path_ctx));
            let (drv, _) = string_of(features, "ref");
            assert_eq!(ctx, [format!("!dev!{drv}")]);
        }
    }

    /// A floating content-addressed derivation's output: the placeholder `derivation` gives it.
    #[test]
    fn unknown_outputs_are_placeholders() {
        let (s, ctx) = string_of(BOTH, r#"outputOf caRef "out""#);
        let (drv, _) = string_of(BOTH, "caRef");
        let sd = firn_format::StoreDir::default();
        let expected = downstream_placeholder(&sd.parse(&drv).unwrap(), "ca", "out");
        assert_eq!(s, expected);
        assert!(!s.starts_with("/nix/store"), "{s}");
        assert_eq!(ctx, [format!("!out!{drv}")]);
        assert_eq!(string_of(BOTH, "ca.outPath"), (s, ctx));
    }

    /// An output of an output: a placeholder made from the inner output's, whether the inner
    /// output's path is known (`d`) or not (`ca`); the same reached from `drv.outPath`.
    #[test]
    fn outputs_of_outputs() {
        let sd = firn_format::StoreDir::default();
        for (name, r, drv_attr) in [("a", "ref", "d"), ("ca", "caRef", "ca")] {
            let (s, ctx) = string_of(BOTH, &format!(r#"outputOf (outputOf {r} "out") "dev""#));
            let (drv, _) = string_of(BOTH, r);
            let inner = downstream_placeholder_hash(&sd.parse(&drv).unwrap(), name, "out");
            let expected = placeholder_text(&computed_output_placeholder_hash(&inner, "dev"));
            assert_eq!(s, expected);
            assert_eq!(ctx, [format!("!dev!out!{drv}")]);
            // From the inner output's string, as `derivation` made it.
            assert_eq!(
                string_of(BOTH, &format!(r#"outputOf {drv_attr}.outPath "dev""#)),
                (s.clone(), ctx.clone())
            );
            // A third level, and the result used as the argument again.
            let (s3, ctx3) = string_of(
                BOTH,
                &format!(r#"outputOf (outputOf (outputOf {r} "out") "dev") "bin""#),
            );
            let h = computed_output_placeholder_hash(
                &computed_output_placeholder_hash(&inner, "dev"),
                "bin",
            );
            assert_eq!(s3, placeholder_text(&h));
            assert_eq!(ctx3, [format!("!bin!dev!out!{drv}")]);
        }
        // Placeholders for unknown outputs are a `ca-derivations` thing, as in current Nix.
        let (msg, trace) = fail(
            "dynamic-derivations",
            r#"outputOf (outputOf ref "out") "out""#,
        );
        assert_eq!(
            msg,
            "experimental Nix feature 'ca-derivations' is disabled; add '--extra-experimental-features ca-derivations' to enable it"
        );
        assert!(!has_arg_frame(&trace), "{trace:?}");
    }

    #[test]
    fn wrong_arguments() {
        let (drv, _) = string_of(BOTH, "ref");
        let (out, _) = string_of(BOTH, "d.outPath");
        let cases = [
            // A derivation is not coerced to a string.
            (r#"outputOf d "out""#, "expected a string but found a set".to_string()),
            (
                r#"outputOf d.drvPath "out""#,
                format!("string '{drv}' has a context which refers to a complete source and binary closure. This is not supported at this time"),
            ),
            (
                r#"outputOf "${ref}${caRef}" "out""#,
                format!("string '{drv}{}' has 2 entries in its context. It should only have exactly one entry", string_of(BOTH, "caRef").0),
            ),
            (
                r#"outputOf (builtins.unsafeDiscardStringContext ref) "out""#,
                format!("string '{drv}' has 0 entries in its context. It should only have exactly one entry"),
            ),
            (
                r#"outputOf (ref + ".x") "out""#,
                format!("path string '{drv}.x' has context with the different path '{drv}'"),
            ),
            (
                r#"outputOf "${d}/bin" "out""#,
                format!("string '{out}/bin' has context with the output 'out' from derivation '{drv}', but the string is not the right placeholder for this derivation output. It should be '{out}'"),
            ),
        ];
        for (body, expected) in cases {
            let (msg, trace) = fail(BOTH, body);
            assert!(msg.starts_with(&expected), "{body}: {msg}");
            assert!(trace.iter().any(|f| f == FIRST_FRAME), "{body}: {trace:?}");
        }
        // The same element twice is one element.
        assert_eq!(
            fail(BOTH, r#"outputOf "${ref}${ref}" "out""#).0,
            format!("path string '{drv}{drv}' has context with the different path '{drv}'")
        );
        // The output name must not refer to the store.
        let (msg, trace) = fail(BOTH, r#"outputOf ref "${ref}""#);
        assert!(msg.starts_with("the string '"), "{msg}");
        assert!(
            msg.contains("is not allowed to refer to a store path"),
            "{msg}"
        );
        assert!(
            trace.contains(&"while evaluating the second argument to builtins.outputOf".into()),
            "{trace:?}"
        );
        // An output the derivation does not have; not a derivation at all.
        let (msg, trace) = fail(BOTH, r#"outputOf ref "lib""#);
        assert_eq!(
            msg,
            format!("derivation '{drv}' does not have output 'lib'")
        );
        assert!(!has_arg_frame(&trace), "{trace:?}");
        let (file, _) = string_of(BOTH, r#"builtins.toFile "x" "y""#);
        let (msg, _) = fail(BOTH, r#"outputOf (builtins.toFile "x" "y") "out""#);
        let base = file.strip_prefix("/nix/store/").unwrap();
        assert_eq!(
            msg,
            format!("error parsing derivation '{file}': store path '{base}' is not a valid derivation path")
        );
    }

    /// `derivation` takes an output of a derivation in the store as any other input; an
    /// output of a built derivation is a clear error (firn cannot write such a `.drv`).
    #[test]
    fn outputs_as_derivation_inputs() {
        assert_eq!(
            run(
                BOTH,
                r#"(mk { name = "u"; x = outputOf ref "out"; }).drvPath == (mk { name = "u"; x = d.outPath; }).drvPath"#
            )
            .unwrap(),
            "true"
        );
        let (msg, _) = fail(
            BOTH,
            r#"(mk { name = "u"; x = outputOf (outputOf ref "out") "out"; }).drvPath"#,
        );
        let (drv, _) = string_of(BOTH, "ref");
        assert!(
            msg.starts_with(&format!("cannot use '{drv}^out^out' as an input")),
            "{msg}"
        );
        assert!(msg.contains("'xp-dyn-drv'"), "{msg}");
    }

    /// A derivation written by an earlier evaluation is read from the store: its outputs'
    /// paths (or placeholders) are what that evaluation gave. A `.drv` path that is not in
    /// the store is current Nix's error.
    #[test]
    fn derivations_in_the_store_are_read() {
        let root = std::env::temp_dir().join(format!("firn-output-of-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let open = |features: &str| {
            let config = firn_store::LocalStoreConfig {
                root: Some(root.clone()),
                ca_derivations: true,
                ..Default::default()
            };
            let store = firn_store::LocalStore::open(config).unwrap();
            let mut ev = Evaluator::with_features(Features::from_names(features));
            ev.store = crate::store::EvalStore::with_store(std::rc::Rc::new(store), true);
            ev
        };
        let strings = |ev: &mut Evaluator, text: &str| -> Vec<String> {
            let e = ev.parse(text, "«test»", "/").unwrap();
            let v = ev.eval_top(e).unwrap();
            crate::builtins::deep_force(ev, &v).unwrap();
            let Value::List(l) = v else { panic!("a list") };
            l.iter()
                .map(|t| match ev.force(t) {
                    Ok(Value::String(s)) => s.s.as_str().to_owned(),
                    _ => panic!("a string"),
                })
                .collect()
        };
        // Written without the feature, so only the `.drv` files know the outputs.
        let mut first = open("ca-derivations");
        let made = strings(
            &mut first,
            &with_drvs(
                "ca-derivations",
                "[ ref d.dev.outPath caRef ca.outPath fixedRef fixed.outPath ]",
            ),
        );
        drop(first);
        let mut second = open(BOTH);
        let plain =
            |p: &str| format!(r#"builtins.appendContext "{p}" {{ "{p}" = {{ path = true; }}; }}"#);
        let got = strings(
            &mut second,
            &format!(
                r#"[ (builtins.outputOf ({}) "dev") (builtins.outputOf ({}) "out") (builtins.outputOf ({}) "out") ]"#,
                plain(&made[0]),
                plain(&made[2]),
                plain(&made[4])
            ),
        );
        assert_eq!(got, [made[1].clone(), made[3].clone(), made[5].clone()]);
        assert!(!made[3].starts_with("/nix/store/"), "{}", made[3]);
        let missing = "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv";
        let e = second
            .parse(
                &format!(r#"builtins.outputOf ({}) "out""#, plain(missing)),
                "«test»",
                "/",
            )
            .unwrap();
        let Err(x) = second.eval_top(e) else {
            panic!("a missing .drv")
        };
        assert_eq!(x.msg, format!("path '{missing}' is not a valid store path"));
        drop(second);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// `getContext` names an output of an output by the path of the inner output, which must
    /// be known (as current Nix, which would also look up realisations of built outputs).
    #[test]
    fn context_of_outputs_of_outputs() {
        let (out, _) = string_of(BOTH, "d.outPath");
        assert_eq!(
            run(
                BOTH,
                r#"builtins.getContext (outputOf (outputOf ref "out") "dev")"#
            )
            .unwrap(),
            format!(r#"{{ "{out}" = {{ outputs = [ "dev" ]; }}; }}"#)
        );
        let (drv, _) = string_of(BOTH, "caRef");
        let (msg, trace) = fail(BOTH, r#"builtins.getContext (outputOf ca.outPath "dev")"#);
        assert_eq!(
            msg,
            format!("cannot operate on output 'out' of the unbuilt derivation '{drv}'")
        );
        assert_eq!(
            trace.first().map(String::as_str),
            Some(format!("looking up realisation for derivation '{drv}'").as_str())
        );
        assert_eq!(
            crate::builtins_drv::context_path(&format!("!dev!out!{drv}")),
            drv
        );
    }
}
