//! `builtins.fetchClosure` and `nix store make-content-addressed`, against CppNix 2.8 where the
//! two agree and against current Nix's rules where 2.8 is older.
//!
//! The closure fetched is made by hand in a chroot store: an input-addressed file `dep`, and
//! `top`, which refers to `dep` and to itself (so the rewrite has a self-reference to hash
//! modulo), plus a content-addressed file added with `nix-store --add`. CppNix copies them to
//! a `file://` cache (`fetchClosure` takes `file://` only with `_NIX_IN_TEST` set, as in
//! CppNix's tests). Both tools then rewrite `top`'s closure into fresh stores: same paths,
//! same path infos, same contents.

mod common;
#[path = "common/https.rs"]
mod https;

use std::process::Command;

use common::*;

const DEP: &str = "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-dep";
const TOP: &str = "/nix/store/1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b-top";
const FEATURES: [&str; 2] = ["--extra-experimental-features", "nix-command fetch-closure"];

struct Setup {
    env: Env,
    /// `file://` URI of the cache holding `top`'s closure and `ca`.
    cache: String,
    /// The content-addressed path in the cache.
    ca: String,
}

fn setup() -> Setup {
    let env = env();
    let src = env.store("src");
    let top = format!("top refers to {DEP} and to itself {TOP}\n");
    register_files(&src, &[(DEP, "dep data\n", &[]), (TOP, &top, &[DEP, TOP])]);
    let file = env.write("f.txt", "hello\n");
    let ca = ok_str(
        cppnix("nix-store")
            .args(["--store", &src, "--add"])
            .arg(&file),
    );
    let ca = ca.trim().to_string();
    let cache = format!("file://{}", env.dir.join("cache").display());
    ok(cppnix("nix").args(["copy", "--store", &src, "--to", &cache, TOP, &ca]));
    Setup { env, cache, ca }
}

/// `nix-instantiate --eval` of `expr` with the feature on, on chroot store `store`, as a test
/// of CppNix's would run it.
fn instantiate(tool: Command, store: &str, expr: &str) -> Outcome {
    let mut c = tool;
    c.env("_NIX_IN_TEST", "1")
        .args(["--store", store, "--eval"])
        .args(["--extra-experimental-features", "fetch-closure"])
        .args(["-E", expr]);
    outcome(&mut c)
}

fn both(s: &Setup, tag: &str, expr: &str) -> (Outcome, Outcome) {
    let c = instantiate(
        cppnix("nix-instantiate"),
        &s.env.store(&format!("c-{tag}")),
        expr,
    );
    let f = instantiate(
        firn("nix-instantiate"),
        &s.env.store(&format!("f-{tag}")),
        expr,
    );
    (c, f)
}

/// The path infos of `path`'s closure in `store` as CppNix reads them, without registration
/// times.
fn closure_infos(store: &str, path: &str) -> serde_json::Value {
    let out = ok(cppnix("nix").args(["path-info", "--store", store, "--json", "-r", path]));
    let mut v: serde_json::Value = serde_json::from_slice(&out).expect("path-info JSON");
    for info in v.as_array_mut().expect("a list") {
        info.as_object_mut()
            .expect("an object")
            .remove("registrationTime");
    }
    v
}

/// What CppNix rewrites `TOP` to (in a store of its own).
fn cppnix_rewrite(s: &Setup) -> String {
    let mut c = cppnix("nix");
    c.args([
        "store",
        "make-content-addressed",
        "--store",
        &s.env.store("m"),
    ])
    .args(["--from", &s.cache, "--json", TOP]);
    rewrites(&String::from_utf8_lossy(&ok(&mut c)))
}

fn rewrites(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("rewrites JSON");
    v["rewrites"][TOP]
        .as_str()
        .expect("TOP rewritten")
        .to_string()
}

#[test]
fn make_content_addressed_equals_cppnix() {
    let s = setup();
    let run = |mut c: Command, store: &str, json: bool| {
        c.args(["store", "make-content-addressed", "--store", store])
            .args(["--from", &s.cache, TOP]);
        if json {
            c.arg("--json");
        }
        outcome(&mut c)
    };
    let (cs, fs) = (s.env.store("c"), s.env.store("f"));
    let c = run(cppnix("nix"), &cs, true);
    let f = run(firn("nix"), &fs, true);
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    assert_eq!(f.stdout.trim(), c.stdout.trim());
    // What is logged, path by path, references first.
    assert_eq!(f.stderr, c.stderr);
    let new = rewrites(&c.stdout);
    assert_ne!(new, TOP);
    assert_eq!(closure_infos(&fs, &new), closure_infos(&cs, &new));
    let real = |store: &str| {
        std::fs::read_to_string(format!("{store}{new}")).expect("reading the rewritten file")
    };
    assert_eq!(real(&fs), real(&cs));
    assert!(real(&fs).contains(&new), "the self-reference is rewritten");
    // Without --json, what each given path became goes to stderr.
    let c = run(cppnix("nix"), &s.env.store("c2"), false);
    let f = run(firn("nix"), &s.env.store("f2"), false);
    assert_eq!(f.stderr, c.stderr);
    assert!(f.stderr.contains(&format!("rewrote '{TOP}' to '{new}'")));
    // A binary cache as the destination: CppNix reads the rewritten closure from it.
    let to = format!("file://{}", s.env.dir.join("ca-cache").display());
    let mut c = firn("nix");
    c.args([
        "store",
        "make-content-addressed",
        "--from",
        &s.cache,
        "--to",
        &to,
    ])
    .args(["--store", &fs, "--json", TOP]);
    assert_eq!(rewrites(&String::from_utf8_lossy(&ok(&mut c))), new);
    let back = s.env.store("back");
    ok(cppnix("nix").args(["copy", "--store", &back, "--from", &to, &new]));
    assert_eq!(closure_infos(&back, &new), closure_infos(&cs, &new));

    // A NAR in the cache that is not the one its narinfo describes is refused (CppNix 2.8
    // rewrites whatever it reads).
    let cache_dir = s.env.dir.join("cache");
    let narinfo = std::fs::read_to_string(cache_dir.join(format!("{}.narinfo", &TOP[11..43])))
        .expect("reading the narinfo");
    let url = narinfo
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("a URL line");
    let nar_path = cache_dir.join(url);
    let mut nar = Vec::new();
    std::io::Read::read_to_end(
        &mut xz2::read::XzDecoder::new(std::fs::File::open(&nar_path).expect("opening the NAR")),
        &mut nar,
    )
    .expect("decompressing the NAR");
    let bad = String::from_utf8_lossy(&nar).replace("itself", "ITSELF");
    assert_ne!(bad.as_bytes(), &nar[..]);
    std::fs::write(&nar_path, xz(bad.as_bytes())).expect("writing the NAR");
    let bad_store = s.env.store("bad");
    let f = run(firn("nix"), &bad_store, true);
    assert_eq!(f.code, Some(1));
    assert!(
        f.error.contains(&format!("the NAR of '{TOP}'")) && f.error.contains("does not match"),
        "{}",
        f.stderr
    );
    assert!(!is_valid(&bad_store, &new));
}

#[test]
fn fetch_closure_agrees_with_cppnix() {
    let s = setup();
    let expr = |rest: &str| {
        format!(
            "builtins.fetchClosure {{ fromStore = \"{}\"; {rest} }}",
            s.cache
        )
    };
    let new = cppnix_rewrite(&s);

    // The rewrite to content-addressed form.
    let (c, f) = both(
        &s,
        "to",
        &expr(&format!("fromPath = {TOP}; toPath = {new};")),
    );
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    assert_eq!((f.code, &f.stdout), (Some(0), &c.stdout), "{}", f.stderr);
    assert_eq!(c.stdout.trim(), format!("\"{new}\""));
    assert_eq!(
        closure_infos(&s.env.store("f-to"), &new),
        closure_infos(&s.env.store("c-to"), &new)
    );
    // `toPath = ""` names the path to put there (2.8 words the advice differently).
    let (c, f) = both(
        &s,
        "empty",
        &expr(&format!("fromPath = {TOP}; toPath = \"\";")),
    );
    let yielded = format!("rewriting '{TOP}' to content-addressed form yielded '{new}'");
    assert!(c.error.contains(&yielded), "{}", c.stderr);
    assert_eq!(f.code, Some(1));
    assert!(f.error.contains(&yielded), "{}", f.stderr);
    assert!(f
        .error
        .contains("Use this value for the 'toPath' attribute"));
    // A wrong `toPath`.
    let wrong = "/nix/store/2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c-top";
    let (c, f) = both(
        &s,
        "wrong",
        &expr(&format!("fromPath = {TOP}; toPath = {wrong};")),
    );
    let msg = format!("{yielded}, while '{wrong}' was expected");
    assert!(c.error.contains(&msg), "{}", c.stderr);
    assert!(f.error.contains(&msg), "{}", f.stderr);

    // A content-addressed path is fetched as it is.
    let (c, f) = both(&s, "ca", &expr(&format!("fromPath = {};", s.ca)));
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    assert_eq!((f.code, &f.stdout), (Some(0), &c.stdout), "{}", f.stderr);
    assert!(is_valid(&s.env.store("f-ca"), &s.ca));

    // The builtin exists only with the feature.
    let (c, f) = both(&s, "has", "builtins ? fetchClosure");
    assert_eq!((c.stdout.trim(), f.stdout.trim()), ("true", "true"));
    for tool in [cppnix("nix-instantiate"), firn("nix-instantiate")] {
        let mut t = tool;
        let o = outcome(t.args(["--eval", "-E", "builtins ? fetchClosure"]));
        assert_eq!(o.stdout.trim(), "false", "{}", o.stderr);
    }

    // Bad arguments: the same message from both.
    for (tag, rest, msg) in [
        (
            "s3",
            format!("fromPath = {TOP}; fromStore = \"s3://bucket\";"),
            "'fetchClosure' only supports http:// and https:// stores",
        ),
        (
            "query",
            format!("fromPath = {TOP}; fromStore = \"https://c.example?priority=1\";"),
            "'fetchClosure' does not support URL query parameters",
        ),
        (
            "unknown",
            format!("fromPath = {TOP}; extra = 1;"),
            "attribute 'extra' isn't supported in call to 'fetchClosure'",
        ),
        (
            "outside",
            "fromPath = /tmp;".to_string(),
            "path '/tmp' is not in the Nix store",
        ),
    ] {
        let text = if rest.contains("fromStore") {
            format!("builtins.fetchClosure {{ {rest} }}")
        } else {
            expr(&rest)
        };
        let (c, f) = both(&s, tag, &text);
        assert!(c.error.contains(msg), "{tag}: {}", c.stderr);
        assert_eq!(f.code, Some(1), "{tag}");
        assert!(f.error.contains(msg), "{tag}: {}", f.stderr);
    }
    let (c, f) = both(&s, "nopath", &expr(""));
    let msg = "attribute 'fromPath' is missing in call to 'fetchClosure'";
    assert!(
        c.error.contains(msg) && f.error.contains(msg),
        "{}",
        f.stderr
    );
    // Without `_NIX_IN_TEST`, a `file://` cache is refused.
    let mut t = firn("nix-instantiate");
    t.args(["--store", &s.env.store("f-env"), "--eval"])
        .args(["--extra-experimental-features", "fetch-closure"])
        .args(["-E", &expr(&format!("fromPath = {};", s.ca))]);
    let o = outcome(&mut t);
    assert!(o
        .error
        .contains("only supports http:// and https:// stores"));
}

/// Where current Nix differs from 2.8: an input-addressed path needs `inputAddressed = true`
/// (and a trusted signature, unless `require-sigs` is off); the other forms say what is wrong.
/// Pure evaluation may read the whole closure fetched.
#[test]
fn fetch_closure_follows_current_nix() {
    let s = setup();
    let eval = |store: &str, rest: &str, opts: &[&str]| {
        let mut c = firn("nix");
        c.env("_NIX_IN_TEST", "1")
            .args(["eval", "--store", store])
            .args(FEATURES)
            .args(opts)
            .args(["--expr", rest]);
        outcome(&mut c)
    };
    let call = |rest: &str| {
        format!(
            "builtins.fetchClosure {{ fromStore = \"{}\"; {rest} }}",
            s.cache
        )
    };

    let o = eval(
        &s.env.store("ia"),
        &call(&format!("fromPath = {TOP};")),
        &[],
    );
    assert_eq!(o.code, Some(1));
    assert!(o.error.contains("lacks a valid signature"), "{}", o.stderr);
    let no_sigs = ["--option", "require-sigs", "false"];
    let o = eval(
        &s.env.store("ia2"),
        &call(&format!("fromPath = {TOP};")),
        &no_sigs,
    );
    assert!(
        o.error.contains(&format!(
            "The 'fromPath' value '{TOP}' is input-addressed, but 'inputAddressed' is set to 'false' (default)."
        )),
        "{}",
        o.stderr
    );
    let o = eval(
        &s.env.store("ia3"),
        &call(&format!("fromPath = {TOP}; inputAddressed = true;")),
        &no_sigs,
    );
    assert_eq!(
        (o.code, o.stdout.trim()),
        (Some(0), &*format!("\"{TOP}\"")),
        "{}",
        o.stderr
    );
    assert!(is_valid(&s.env.store("ia3"), DEP), "the closure is copied");
    let o = eval(
        &s.env.store("ia4"),
        &call(&format!("fromPath = {}; inputAddressed = true;", s.ca)),
        &[],
    );
    assert!(
        o.error
            .contains("is not input-addressed, but 'inputAddressed' is set to 'true'"),
        "{}",
        o.stderr
    );
    let o = eval(
        &s.env.store("ia5"),
        &call(&format!(
            "fromPath = {TOP}; inputAddressed = true; toPath = \"\";"
        )),
        &[],
    );
    assert!(
        o.error
            .contains("attribute 'inputAddressed' is set to true, but 'toPath' is also set"),
        "{}",
        o.stderr
    );
    // A `toPath` that is valid already is not rewritten again, but must be content-addressed.
    let o = eval(
        &s.env.store("ia3"),
        &call(&format!("fromPath = {TOP}; toPath = {TOP};")),
        &[],
    );
    assert!(o
        .error
        .contains("is input-addressed, so it can't possibly be the result"));

    // Signed by a trusted key, an input-addressed closure needs no `require-sigs = false`.
    let key = ok(cppnix("nix").args(["key", "generate-secret", "--key-name", "c-1"]));
    let secret = s.env.dir.join("sk");
    std::fs::write(&secret, &key).expect("writing the key");
    let public = ok_str(
        cppnix("nix")
            .args(["key", "convert-secret-to-public"])
            .stdin(std::fs::File::open(&secret).expect("opening the key")),
    );
    let signed = format!(
        "file://{}?secret-key={}",
        s.env.dir.join("signed").display(),
        secret.display()
    );
    let src = s.env.store("src");
    ok(cppnix("nix").args(["copy", "--store", &src, "--to", &signed, TOP]));
    let signed_url = format!("file://{}", s.env.dir.join("signed").display());
    let text = format!(
        "builtins.fetchClosure {{ fromStore = \"{signed_url}\"; fromPath = {TOP}; inputAddressed = true; }}"
    );
    let o = eval(
        &s.env.store("signed"),
        &text,
        &["--option", "trusted-public-keys", public.trim()],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);

    // `nix eval --expr` is pure: the fetched closure is readable, the rest of the store not.
    let new_store = s.env.store("pure");
    let new = cppnix_rewrite(&s);
    let text = format!(
        "let p = {}; in [ (builtins.readFile p) (builtins.getContext p) ]",
        call(&format!("fromPath = {TOP}; toPath = {new};"))
    );
    let o = eval(&new_store, &text, &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stdout.contains(&format!("and to itself {new}")),
        "{}",
        o.stdout
    );
    assert!(o
        .stdout
        .contains(&format!("\"{new}\" = {{ path = true; }}")));
    let infos = closure_infos(&new_store, &new);
    let dep = infos
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|i| i["path"].as_str())
        .find(|p| p.ends_with("-dep"))
        .expect("dep is in the closure")
        .to_string();
    let read_dep = format!(
        "builtins.seq ({}) (builtins.readFile {dep})",
        call(&format!("fromPath = {TOP}; toPath = {new};"))
    );
    let o = eval(&new_store, &read_dep, &[]);
    assert_eq!(
        (o.code, o.stdout.trim()),
        (Some(0), "\"dep data\\n\""),
        "{}",
        o.stderr
    );
    let o = eval(&new_store, &format!("builtins.readFile {dep}"), &[]);
    assert!(
        o.error.contains("forbidden in pure eval mode"),
        "{}",
        o.stderr
    );
}

/// An installable that is a derivation output is built first (as `nix copy` builds it), then
/// rewritten: the same rewrite as CppNix's, which builds it in its own store.
#[test]
fn make_content_addressed_of_a_built_output_equals_cppnix() {
    need_busybox();
    let env = env();
    let expr = env.write(
        "e.nix",
        r#"
let bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
in {
  self = derivation {
    name = "self";
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" "echo made at $out > $out" ];
  };
}
"#,
    );
    let expr = expr.to_string_lossy().into_owned();
    let run = |mut c: Command, store: &str| {
        c.args([
            "store",
            "make-content-addressed",
            "--store",
            store,
            "--json",
        ])
        .args(["--file", &expr, "self"]);
        outcome(&mut c)
    };
    let (cs, fs) = (env.store("c"), env.store("f"));
    let c = run(cppnix("nix"), &cs);
    let mut firn_nix = firn("nix");
    firn_nix.args(["--option", "sandbox", "true"]);
    let f = run(firn_nix, &fs);
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    assert_eq!(f.stdout.trim(), c.stdout.trim());
    let v: serde_json::Value = serde_json::from_str(&c.stdout).expect("rewrites JSON");
    let (old, new) = v["rewrites"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .expect("one rewrite");
    assert_ne!(old, new);
    assert_eq!(closure_infos(&fs, &new), closure_infos(&cs, &new));
    let text = std::fs::read_to_string(format!("{fs}{new}")).expect("reading the rewritten output");
    assert_eq!(text, format!("made at {new}\n"));
}

/// Over HTTPS, as users call it (no `_NIX_IN_TEST`): the cache served by a TLS server whose
/// CA the tools are told of; CppNix and firn fetch and rewrite the same closure.
#[test]
fn fetch_closure_over_https_equals_cppnix() {
    let s = setup();
    let port = https::https_server(s.env.dir.join("cache"));
    let url = format!("https://127.0.0.1:{port}");
    let new = cppnix_rewrite(&s);
    let ca = https::test_ca();
    for (rest, want) in [
        (format!("fromPath = {TOP}; toPath = {new};"), new.clone()),
        (format!("fromPath = {};", s.ca), s.ca.clone()),
    ] {
        let expr = format!("builtins.fetchClosure {{ fromStore = \"{url}\"; {rest} }}");
        let mut outs = Vec::new();
        for (who, mut c) in [
            ("cppnix", cppnix("nix-instantiate")),
            ("firn", firn("nix-instantiate")),
        ] {
            let store = s.env.store(&format!("{who}-{}", &want[11..19]));
            c.env("NIX_SSL_CERT_FILE", &ca)
                .args(["--store", &store, "--eval"])
                .args(["--extra-experimental-features", "fetch-closure"])
                .args(["-E", &expr]);
            let o = outcome(&mut c);
            assert_eq!(o.code, Some(0), "{who}: {}", o.stderr);
            assert_eq!(o.stdout.trim(), format!("\"{want}\""), "{who}");
            outs.push(closure_infos(&store, &want));
        }
        assert_eq!(outs[0], outs[1]);
    }
}
