//! The evaluator on its own: laziness, black-holing, recursion limits, error kinds.

mod common;

use firn_eval::{ErrorKind, Evaluator};

fn eval(text: &str) -> Result<String, (ErrorKind, String)> {
    common::run(text).map_err(|e| (e.kind, e.msg.clone()))
}

#[test]
fn laziness() {
    assert_eq!(eval("let x = throw \"never\"; in 1").unwrap(), "1");
    assert_eq!(
        eval("builtins.length [ (throw \"a\") (abort \"b\") ]").unwrap(),
        "2"
    );
    assert_eq!(eval("({ a = throw \"x\"; b = 2; }).b").unwrap(), "2");
    assert_eq!(
        eval("builtins.attrNames { a = throw \"x\"; }").unwrap(),
        "[ \"a\" ]"
    );
}

/// `addErrorContext`'s message is evaluated only when the value fails (as CppNix does; the
/// module system relies on it for speed); an error in the message then replaces the first.
#[test]
fn error_context_messages_are_lazy() {
    assert_eq!(
        eval("builtins.addErrorContext (throw \"never\") 1").unwrap(),
        "1"
    );
    let (_, msg) = eval("builtins.addErrorContext (throw \"m\") (throw \"v\")").unwrap_err();
    assert_eq!(msg, "m");
    let (_, msg) = eval("builtins.addErrorContext 1 (throw \"v\")").unwrap_err();
    assert!(
        msg.contains("cannot coerce an integer to a string"),
        "{msg}"
    );
}

#[test]
fn infinite_recursion_is_detected() {
    let (_, msg) = eval("let x = x + 1; in x").unwrap_err();
    assert!(msg.contains("infinite recursion"), "{msg}");
    let (_, msg) = eval("rec { a = b; b = a; }.a").unwrap_err();
    assert!(msg.contains("infinite recursion"), "{msg}");
}

#[test]
fn runaway_recursion_is_an_error_not_a_crash() {
    let (_, msg) = eval("let f = x: f (x + 1) + 1; in f 0").unwrap_err();
    assert!(msg.contains("max-call-depth"), "{msg}");
    // Deep but finite work is fine.
    assert_eq!(
        eval("builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: 1) 1000000)").unwrap(),
        "1000000"
    );
}

#[test]
fn deep_forcing_is_bounded_by_the_stack_not_by_a_count() {
    // A chain of 50,000 thunks, each forcing the previous one: no function call nests, so
    // max-call-depth does not apply; it is deeper than 10,000 and fine (CppNix 2.8 too).
    let chain = "let l = builtins.genList (i: i) 50000; \
                 s = builtins.listToAttrs (map (i: { name = toString i; \
                   value = if i == 0 then 0 else s.${toString (i - 1)} + 1; }) l); \
                 in s.\"49999\"";
    assert_eq!(eval(chain).unwrap(), "49999");
    // Deeper than the stack allows, it stops with an error before the stack ends (here a
    // thread of 16 MiB).
    let deep = chain.replace("50000", "400000").replace("49999", "399999");
    let r = std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            let mut ev = Evaluator::new();
            ev.set_stack_size(16 << 20);
            let e = ev.parse(&deep, "«test»", "/").map_err(|e| e.msg.clone())?;
            ev.eval_top(e).map(|_| ()).map_err(|e| e.msg.clone())
        })
        .expect("spawning")
        .join()
        .expect("no crash");
    let msg = r.unwrap_err();
    assert!(msg.contains("stack overflow"), "{msg}");
}

#[test]
fn only_throw_and_assert_are_catchable() {
    assert_eq!(
        eval("(builtins.tryEval (throw \"x\")).success").unwrap(),
        "false"
    );
    assert_eq!(
        eval("(builtins.tryEval (assert false; 1)).success").unwrap(),
        "false"
    );
    let (kind, _) = eval("builtins.tryEval (abort \"x\")").unwrap_err();
    assert_eq!(kind, ErrorKind::Abort);
    let (kind, _) = eval("builtins.tryEval ({ }.a)").unwrap_err();
    assert_eq!(kind, ErrorKind::Other);
}

#[test]
fn did_you_mean() {
    // A missing attribute: current Nix's "Did you mean" line after the position.
    let e = common::run("{ foo = 1; }.fooo").unwrap_err();
    assert_eq!(e.msg, "attribute 'fooo' missing");
    assert!(e.render(false).ends_with("\n       Did you mean foo?"));
    let (_, msg) = eval("let stdenv = 1; in stdnev").unwrap_err();
    assert!(
        msg.contains("undefined variable 'stdnev'; did you mean 'stdenv'?"),
        "{msg}"
    );
    let (_, msg) = eval("toStirng 1").unwrap_err();
    assert!(msg.contains("did you mean 'toString'"), "{msg}");
}

#[test]
fn lexical_scope_beats_with() {
    assert_eq!(eval("let x = 1; in with { x = 2; }; x").unwrap(), "1");
    assert_eq!(eval("with { x = 2; }; with { x = 3; }; x").unwrap(), "3");
    assert_eq!(eval("with { true = 2; }; true").unwrap(), "true");
}

#[test]
fn recursive_bindings_see_their_own_scope() {
    assert_eq!(eval("let x = 1; in rec { x = 2; y = x; }.y").unwrap(), "2");
    assert_eq!(eval("let x = 1; in let x = 2; y = x; in y").unwrap(), "2");
    assert_eq!(
        eval("let a = 1; in ({ a ? 5, b ? a }: b) { }").unwrap(),
        "5"
    );
    assert_eq!(eval("let x = 1; in { x = 2; y = x; }.y").unwrap(), "1");
}

#[test]
fn file_errors_are_worded_as_nix_does() {
    let (_, msg) = eval("builtins.readDir /nonexistent-firn-path").unwrap_err();
    assert_eq!(msg, "path '/nonexistent-firn-path' does not exist");
    let (_, msg) = eval("builtins.readDir /etc/hostname").unwrap_err();
    assert_eq!(msg, "'/etc/hostname' is not a directory");
    let (_, msg) = eval("\"${/nonexistent-firn-path}\"").unwrap_err();
    assert_eq!(msg, "path '/nonexistent-firn-path' does not exist");
    let (_, msg) = eval("{ a = 1; ${\"a\" + \"\"} = 2; }").unwrap_err();
    assert_eq!(msg, "dynamic attribute 'a' already defined at «test»:1:3");
}

/// `sort` is stable and right on sorted, reversed, mixed and equal-keyed input (the merge
/// joins halves that are already in order, or in reverse order, without merging).
#[test]
fn sort_is_stable_on_every_shape() {
    let by_key = "builtins.sort (a: b: a.k < b.k)";
    // Equal keys keep their order, in each shape of input.
    assert_eq!(
        eval(&format!(
            "map (x: x.v) ({by_key} [ {{k=2;v=1;}} {{k=1;v=2;}} {{k=2;v=3;}} {{k=1;v=4;}} {{k=0;v=5;}} ])"
        ))
        .unwrap(),
        "[ 5 2 4 1 3 ]"
    );
    assert_eq!(
        eval(&format!(
            "map (x: x.v) ({by_key} (builtins.genList (i: {{ k = 3 - i / 3; v = i; }}) 9))"
        ))
        .unwrap(),
        "[ 6 7 8 3 4 5 0 1 2 ]"
    );
    let n = 1000;
    let sorted = eval(&format!("builtins.genList (i: i) {n}")).unwrap();
    for input in [
        format!("builtins.genList (i: i) {n}"),
        format!("builtins.genList (i: {n} - 1 - i) {n}"),
        format!("builtins.genList (i: (i * 7919) - (i * 7919) / {n} * {n}) {n}"),
    ] {
        assert_eq!(
            eval(&format!("builtins.sort (a: b: a < b) ({input})")).unwrap(),
            sorted
        );
    }
}

/// Files parsed ahead on another thread (`firn_eval::prefetch`) evaluate as files read at
/// their `import`: the same values, the same errors at the same places, whichever way each
/// file went.
#[test]
fn files_parsed_ahead_evaluate_as_files_read_in_place() {
    let d = std::env::temp_dir().join(format!("firn-eval-prefetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sub")).expect("temporary directory");
    let w = |name: &str, text: &str| std::fs::write(d.join(name), text).expect("write");
    // Busy work first, so the worker has parsed the files named before they are imported.
    // Then `other.nix`, read in place, interns names `a.nix` has too (which the worker's
    // tree then has to be given the evaluator's symbols for).
    w(
        "main.nix",
        "let busy = builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 300000); in \
         builtins.seq busy (builtins.seq (scopedImport { } ./other.nix) \
         { a = import ./a.nix; b = import ./sub; c = import ./sub/default.nix; \
         bad = import ./bad.nix; unbound = import ./unbound.nix; data = ./data.txt; \
         names = builtins.attrNames (import ./a.nix { z = 1; y = 2; }); \
         pos = import ./pos.nix; })",
    );
    // Positions in a file parsed ahead (its tree was moved to its offsets there).
    w(
        "pos.nix",
        "{\n  p = __curPos;\n  q = builtins.unsafeGetAttrPos \"q\" { q = 1; };\n  e = 1 + \"x\";\n}",
    );
    w(
        "other.nix",
        "let fresh = 1; w = 2; v = { p = 3; }; in fresh + w + v.p",
    );
    w(
        "a.nix",
        "{ y, z }: rec { inherit y z; w = y + z; v = { p = w; }; }",
    );
    w("sub/default.nix", "{ q = ../a.nix; }");
    w("bad.nix", "{\n  x = 1;\n  y = ;\n}");
    w("unbound.nix", "{ x = nope; }");
    w("data.txt", "text");
    let main = d.join("main.nix").to_string_lossy().into_owned();
    let cases = [
        format!("with import {main}; [ (a {{ y = 1; z = 2; }}) b c names ]"),
        format!("(import {main}).bad"),
        format!("(import {main}).unbound"),
        format!("with (import {main}).pos; [ p q ]"),
        format!("(import {main}).pos.e"),
    ];
    // The result (or the error and its place) and how many files were parsed ahead.
    let run = |text: String, prefetch: bool| {
        std::thread::Builder::new()
            .stack_size(firn_eval::eval::EVAL_THREAD_STACK)
            .spawn(move || {
                let mut ev = Evaluator::new();
                ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
                ev.prefetch = prefetch;
                let r = (|| {
                    let e = ev.parse(&text, "«test»", "/")?;
                    let v = ev.eval_top(e)?;
                    firn_eval::builtins::deep_force(&mut ev, &v)?;
                    firn_eval::print::print_value(&mut ev, &v, true)
                })()
                .map_err(|e| format!("{}\n{}", e.msg, e.at.clone().unwrap_or_default()));
                (r, ev.prefetched())
            })
            .expect("spawning")
            .join()
            .expect("no panic")
    };
    let mut ahead = 0;
    for case in &cases {
        let (on, n) = run(case.clone(), true);
        let (off, none) = run(case.clone(), false);
        assert_eq!(on, off, "{case}");
        assert_eq!(none, 0);
        ahead += n;
    }
    let (value, _) = run(cases[0].clone(), true);
    assert_eq!(
        value.as_deref(),
        Ok(format!(
            // `./sub` and `./sub/default.nix` are one import.
            "[ {{ v = {{ p = 3; }}; w = 3; y = 1; z = 2; }} {{ q = {}/a.nix; }} «repeated» [ \"v\" \"w\" \"y\" \"z\" ] ]",
            d.display(),
        )
        .as_str())
    );
    let (bad, _) = run(cases[1].clone(), true);
    let bad = bad.expect_err("a parse error");
    assert!(bad.starts_with("syntax error, unexpected ';'"), "{bad}");
    assert!(bad.contains("bad.nix:3:7"), "{bad}");
    let (unbound, _) = run(cases[2].clone(), true);
    assert!(unbound
        .expect_err("unbound")
        .starts_with("undefined variable 'nope'"));
    let (pos, _) = run(cases[3].clone(), true);
    let pos = pos.expect("positions");
    assert!(
        pos.contains("line = 2;") && pos.contains("line = 3;"),
        "{pos}"
    );
    let (e, _) = run(cases[4].clone(), true);
    assert!(e.expect_err("1 + \"x\"").contains("pos.nix:4:"));
    // The files the cases import were parsed ahead (`a.nix`, `sub`, `pos.nix`; those with
    // errors are left to the evaluator).
    assert!(ahead >= 4, "only {ahead} files were parsed ahead");
    let _ = std::fs::remove_dir_all(&d);
}
