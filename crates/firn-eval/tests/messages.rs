//! Error messages worded as current Nix words them: explained equality assertions, values
//! shown within a budget, the messages of single builtins, and how errors are laid out
//! (`--show-trace` frames, positions, source files that are not UTF-8).

mod common;

use common::{run, run_with};
use firn_eval::error::{error_line, fold_frames, Folded};
use firn_eval::ErrorKind;
use firn_syntax::bytes::{decode, encode};

/// The error message of `text`, which must fail.
fn msg(text: &str) -> String {
    match run(text) {
        Ok(v) => panic!("{text} evaluated to {v}"),
        Err(e) => e.msg.clone(),
    }
}

/// The message of a failed assertion (which must be catchable), with its frames' first
/// lines, innermost first.
fn assertion(text: &str) -> (String, Vec<String>) {
    let e = run(text).expect_err("the assertion fails");
    assert_eq!(e.kind, ErrorKind::Assert, "{}", e.msg);
    let frames = e
        .trace
        .iter()
        .map(|t| t.lines().next().unwrap_or_default().to_string())
        .collect();
    (e.msg.clone(), frames)
}

#[test]
fn unequal_numbers_say_their_types_and_values() {
    let (m, _) = assertion("assert 1 + 1 == 3; 0");
    assert_eq!(
        m,
        "an integer with value '2' is not equal to an integer with value '3'"
    );
    let (m, _) = assertion("assert 0.5 == 1; 0");
    assert_eq!(
        m,
        "a float with value '0.5' is not equal to an integer with value '1'"
    );
    // Numbers of both kinds that are equal are equal.
    assert_eq!(run("assert 2 == 2.0; true").unwrap(), "true");
}

#[test]
fn values_of_different_types() {
    let (m, _) = assertion("assert \"a\" == null; 0");
    assert_eq!(
        m,
        "a string of value '\"a\"' is not equal to null of value 'null'"
    );
    let (m, _) = assertion("assert builtins.head == true; 0");
    assert_eq!(
        m,
        "the built-in function 'head' of value '«primop head»' is not equal to a Boolean of value 'true'"
    );
}

#[test]
fn unequal_scalars() {
    let (m, frames) = assertion("assert [ true ] == [ false ]; 0");
    assert_eq!(m, "boolean 'true' is not equal to boolean 'false'");
    assert_eq!(
        frames,
        [
            "while comparing list element 0",
            "while evaluating the condition of the assertion '([ (true) ] == [ (false) ])'"
        ]
    );
    let (m, _) = assertion("let s = \"x\"; in assert s == \"y\"; 0");
    assert_eq!(m, "string '\"x\"' is not equal to string '\"y\"'");
    let (m, _) = assertion("assert /a == /b; 0");
    assert_eq!(m, "path '/a' is not equal to path '/b'");
}

#[test]
fn lists_of_different_sizes_are_shown() {
    let (m, _) = assertion("assert [ 1 2 3 ] == [ 1 ]; 0");
    assert_eq!(
        m,
        "list of size '3' is not equal to list of size '1', left hand side is '[ 1 2 3 ]', \
         right hand side is '[ 1 ]'"
    );
}

#[test]
fn sets_differ_by_size_names_or_an_attribute() {
    let (m, _) = assertion("assert { a = 1; } == { }; 0");
    assert_eq!(
        m,
        "attribute names of attribute set '{ a = 1; }' differs from attribute set '{ }'"
    );
    let (m, _) = assertion("assert { x = 1; } == { y = 1; }; 0");
    assert_eq!(
        m,
        "attribute name 'x' is contained in '{ x = 1; }', but not in '{ y = 1; }'"
    );
    let (m, _) = assertion("assert { b = 1; c = 1; } == { a = 1; b = 1; }; 0");
    assert_eq!(
        m,
        "attribute name 'a' is missing in '{ b = 1; c = 1; }', but is contained in '{ a = 1; b = 1; }'"
    );
    let (m, frames) = assertion("assert { p.q = 1; } == { p.q = 2; }; 0");
    assert_eq!(
        m,
        "an integer with value '1' is not equal to an integer with value '2'"
    );
    assert_eq!(
        frames,
        [
            "where right hand side is",
            "where left hand side is",
            "while comparing attribute 'q'",
            "where right hand side is",
            "where left hand side is",
            "while comparing attribute 'p'",
            "while evaluating the condition of the assertion '({ p = { q = 1; }; } == { p = { q = 2; }; })'"
        ]
    );
}

#[test]
fn derivations_compare_by_out_path_and_functions_never() {
    let (m, frames) = assertion(
        "assert { type = \"derivation\"; outPath = \"/x\"; a = 1; } \
         == { type = \"derivation\"; outPath = \"/y\"; }; 0",
    );
    assert_eq!(m, "string '\"/x\"' is not equal to string '\"/y\"'");
    assert_eq!(
        frames[0],
        "while comparing a derivation by its 'outPath' attribute"
    );
    let (m, _) = assertion("let f = x: x; in assert f == f; 0");
    assert_eq!(
        m,
        "distinct functions and immediate comparisons of identical functions compare as unequal"
    );
}

#[test]
fn other_assertions_and_catching() {
    let (m, _) = assertion("assert 1 > 2; 0");
    assert_eq!(m, "assertion '(__lessThan 2 1)' failed");
    assert_eq!(
        run("(builtins.tryEval (assert 1 == 2; 0)).success").unwrap(),
        "false"
    );
}

#[test]
fn attributes_and_items_shown_are_budgeted_over_the_whole_value() {
    assert_eq!(
        msg("\"\" + { a = 1; b = 2; c = 3; d = 4; e = 5; f = 6; g = 7; h = 8; i = 9; j = 10; k = 11; l = 12; }"),
        "cannot coerce a set to a string: { a = 1; b = 2; c = 3; d = 4; e = 5; f = 6; g = 7; \
         h = 8; i = 9; j = 10; «2 attributes elided» }"
    );
    assert_eq!(
        msg("let v = [ [ 1 2 3 4 5 6 7 8 9 ] [ 10 11 ] ]; in builtins.deepSeq v (\"\" + v)"),
        "cannot coerce a list to a string: [ [ 1 2 3 4 5 6 7 8 9 ] «1 item elided» ]"
    );
    assert_eq!(
        msg("let v = [ [ 1 2 3 4 5 6 7 8 ] [ 9 10 11 12 ] ]; in builtins.deepSeq v (\"\" + v)"),
        "cannot coerce a list to a string: [ [ 1 2 3 4 5 6 7 8 ] [ 9 «3 items elided» ] ]"
    );
}

#[test]
fn how_values_are_shown_in_errors() {
    // `type` first; unevaluated parts as thunks; a set met again is "repeated".
    assert_eq!(
        msg("\"\" + { a = 1; type = \"t\"; z = 1 + 1; }"),
        "cannot coerce a set to a string: { type = \"t\"; a = 1; z = «thunk»; }"
    );
    assert_eq!(
        msg("let x = { a = 1; }; in builtins.seq x (\"\" + { p = x; q = x; })"),
        "cannot coerce a set to a string: { p = { a = 1; }; q = «repeated»; }"
    );
    let m = msg("let s = builtins.concatStringsSep \"\" (builtins.genList (x: \"a\") 1030); in builtins.length s");
    assert!(m.ends_with("aaaa\" «6 bytes elided»"), "{m}");
    // An empty set or list is never "repeated".
    assert_eq!(
        msg("let v = { a = { }; b = { }; }; in builtins.deepSeq v (\"\" + v)"),
        "cannot coerce a set to a string: { a = { }; b = { }; }"
    );
}

#[test]
fn derivation_names() {
    assert_eq!(
        msg("builtins.derivationStrict { name = \"a b\"; }"),
        "invalid derivation name: name 'a b' contains illegal character ' '. Please pass a different 'name'."
    );
    assert_eq!(
        msg("builtins.derivationStrict { name = \".-x\"; }"),
        "invalid derivation name: name '.-x' is not valid: first dash-separated component must not be '.'. \
         Please pass a different 'name'."
    );
    assert_eq!(
        msg("builtins.derivationStrict { }"),
        "attribute 'name' missing"
    );
}

#[test]
fn arithmetic_checks_arguments_in_nix_order() {
    assert_eq!(
        msg("builtins.div 1 \"x\""),
        "expected a float but found a string: \"x\""
    );
    assert_eq!(msg("builtins.div \"x\" 0"), "division by zero");
    assert_eq!(
        msg("builtins.div \"x\" 2"),
        "expected an integer but found a string: \"x\""
    );
    assert_eq!(
        msg("builtins.div \"x\" 2.0"),
        "expected a float but found a string: \"x\""
    );
    assert_eq!(
        msg("builtins.mul 2.5 null"),
        "expected a float but found null: null"
    );
}

#[test]
fn functions_are_checked_after_their_data() {
    assert_eq!(run("builtins.filter 1 [ ]").unwrap(), "[ ]");
    assert_eq!(
        msg("builtins.filter 1 \"x\""),
        "expected a list but found a string: \"x\""
    );
    assert_eq!(
        msg("builtins.filter 1 [ 1 ]"),
        "expected a function but found an integer: 1"
    );
    assert_eq!(
        msg("builtins.filterSource null /tmp"),
        "expected a function but found null: null"
    );
    assert_eq!(
        msg("builtins.functionArgs 1"),
        "'functionArgs' requires a function"
    );
}

#[test]
fn operators_show_the_wrong_operand() {
    assert_eq!(msg("8 ++ [ ]"), "expected a list but found an integer: 8");
    assert_eq!(msg("{ } // 1"), "expected a set but found an integer: 1");
}

#[test]
fn regular_expressions_and_hash_algorithms() {
    assert_eq!(
        msg("builtins.match \"(\" \"\""),
        "invalid regular expression '('"
    );
    assert_eq!(
        msg("builtins.split \"a)\" \"\""),
        "invalid regular expression 'a)'"
    );
    assert_eq!(
        msg("builtins.hashString \"sha3\" \"\""),
        "unknown hash algorithm 'sha3', expect 'blake3', 'md5', 'sha1', 'sha256', or 'sha512'"
    );
}

#[test]
fn file_builtins_coerce_their_argument_to_a_path() {
    assert_eq!(
        msg("builtins.pathExists \"relative\""),
        "string 'relative' doesn't represent an absolute path"
    );
    assert_eq!(
        run("builtins.pathExists { outPath = \"/\"; }").unwrap(),
        "true"
    );
    assert_eq!(
        run("builtins.readFileType { __toString = _: \"/\"; }").unwrap(),
        "\"directory\""
    );
    assert_eq!(
        msg("builtins.pathExists [ ]"),
        "cannot coerce a list to a string: [ ]"
    );
    assert_eq!(
        msg("builtins.readDir { outPath = throw \"no path\"; }"),
        "no path"
    );
}

#[test]
fn to_json_peels_to_string_and_out_path() {
    assert_eq!(
        msg("builtins.toJSON { __toString = _: 1; }"),
        "`__toString` should return a string, but got an integer: 1"
    );
    assert_eq!(
        msg("builtins.toJSON { outPath = { __toString = _: { }; }; }"),
        "`__toString` must return a string, but got a set: { }"
    );
    assert_eq!(
        run("builtins.toJSON { outPath = { x = 1; }; }").unwrap(),
        "\"{\\\"x\\\":1}\""
    );
    assert_eq!(
        run("builtins.toJSON [ { __toString = _: \"s\"; } ]").unwrap(),
        "\"[\\\"s\\\"]\""
    );
}

#[test]
fn from_toml_messages() {
    // Highlighted as CppNix's: its last line, the closing escape, keeps its indentation.
    let e = run("builtins.fromTOML \"x = 99999999999999999999\"").unwrap_err();
    let shown = firn_eval::term::strip_escapes(&e.render(false)).into_owned();
    // The position is the builtin's frame's (shown without `--show-trace` too).
    assert!(
        shown.starts_with(
            "\n       … while calling the 'fromTOML' builtin\n         at «test»:1:1:\n"
        ),
        "{shown}"
    );
    assert!(
        shown.ends_with(
            "\n       error: while parsing TOML: [error] toml::parse_dec_integer: too large \
             integer: current max digits = 2^63\n        --> fromTOML\n          |\n        \
             1 | x = 99999999999999999999\n          |                         ^-- must be < \
             2^63\n       "
        ),
        "{shown}"
    );
    assert_eq!(
        msg("builtins.fromTOML \"x = \\\"a\\\\u0000\\\"\""),
        "while parsing TOML: error: input string 'a\u{2400}' cannot be represented as Nix string \
         because it contains null bytes"
    );
}

#[test]
fn generic_closure_compares_the_new_key_first() {
    assert_eq!(
        msg("builtins.genericClosure { startSet = [ { key = 1; } { key = \"a\"; } ]; operator = _: [ ]; }"),
        "cannot compare a string with an integer; values are \"a\" and 1"
    );
}

#[test]
fn fetcher_arguments_are_checked_before_fetching() {
    assert_eq!(
        msg("builtins.fetchurl \"http://127.0.0.1:1/a~b\""),
        "invalid store path name when fetching URL 'http://127.0.0.1:1/a~b': name 'a~b' contains \
         illegal character '~'. Please pass an attribute set with 'url' and 'name' attributes to \
         'fetchurl',  so that it can create a valid store path."
    );
    assert_eq!(
        msg("builtins.fetchurl { url = \"http://127.0.0.1:1/a~b\"; }"),
        "invalid store path name when fetching URL 'http://127.0.0.1:1/a~b': name 'a~b' contains \
         illegal character '~'. Please add a valid 'name' attribute to the argument for \
         'fetchurl', so that it can create a valid store path."
    );
    assert_eq!(
        msg("builtins.fetchTarball { url = \"http://127.0.0.1:1/a\"; name = \"\"; }"),
        "invalid store path name when fetching URL 'http://127.0.0.1:1/a': name must not be \
         empty. Please change the value for the 'name' attribute passed to 'fetchTarball', so \
         that it can create a valid store path."
    );
    assert_eq!(
        msg("builtins.fetchTree { type = \"file\"; url = \"file:///x\"; revCount = -1; }"),
        "negative value given for 'fetchTree' argument 'revCount': -1"
    );
    assert_eq!(
        msg("builtins.fetchTree \"file:./x.tar.gz\""),
        "tarball 'file:./x.tar.gz' must use an absolute path. The 'file' scheme does not \
         support relative paths."
    );
    // Current Nix makes that complaint while fetching the input.
    assert_eq!(
        trace_outline("builtins.fetchTree \"file:./x.tar.gz\"")[1..4],
        [
            "       … while calling the 'fetchTree' builtin",
            "         at «test»:1:1:",
            "       … while fetching the input 'file:./x.tar.gz'",
        ]
    );
}

/// The error of `text` evaluated with `max-call-depth` at `depth`.
fn too_deep(text: &str, depth: usize) -> firn_eval::EvalError {
    run_with(text, move |ev| ev.max_call_depth = depth).unwrap_err()
}

#[test]
fn deep_structures_overflow_where_current_nix_does() {
    // Upstream's eval-fail-{deepseq,toJSON}-stack-overflow, with a limit of 20 calls (the
    // builtin's call is the first): a builtin's application fails before it is called.
    let list = "let l = builtins.foldl' (tail: head: { inherit head tail; }) null \
                (builtins.genList (x: x) 100); in";
    for (f, at) in [("builtins.deepSeq l 1", 86), ("builtins.toJSON l", 48)] {
        let e = too_deep(&format!("{list} {f}"), 20);
        assert_eq!(e.msg, "stack overflow; max-call-depth exceeded", "{f}");
        let frames = first_lines(&e);
        assert!(
            frames[0].ends_with("attribute 'head'"),
            "{f}: {}",
            frames[0]
        );
        let tails = frames.iter().filter(|l| l.contains("'tail'")).count();
        assert_eq!(tails, 18, "{f}");
        // At the function applied (deepSeq), at the attribute (toJSON): not in a call.
        let shown = e.render(true);
        assert!(!shown.contains("from call site"), "{shown}");
        let col = e.at.as_deref().unwrap_or_default().trim_start();
        assert!(col.starts_with(&format!("at «test»:1:{at}:")), "{f}: {col}");
    }
    // As in current Nix, a call may start at the depth of the limit: 10 calls of `f` (the
    // last calls `isNull` at depth 10) are fine, 11 are not.
    let chain = |n: usize| {
        let nested = (0..n).fold("null".to_string(), |s, _| format!("{{ t = {s}; }}"));
        format!("let f = l: if builtins.isNull l then 0 else f l.t; in f ({nested})")
    };
    let ok = |n: usize| run_with(&chain(n), |ev| ev.max_call_depth = 10).is_ok();
    assert!(ok(9) && !ok(10));
}

#[test]
fn a_variable_bound_to_a_variable_shares_its_thunk_in_errors() {
    // As current Nix: `y = x` binds `y` to `x`'s thunk, so the recursion is met at `y` in
    // `x = y` (upstream's eval-fail-blackhole and eval-fail-scope-5).
    for (text, at) in [
        ("let x = y; y = x; in x", "1:9"),
        ("let x = y; y = x; in y", "1:9"),
        ("({ a ? b, b ? a }: a) { }", "1:8"),
        // `y` is `x`'s thunk: the recursion is met where `y` is used.
        ("let x = let y = x; in y; in x", "1:23"),
    ] {
        let e = run(text).unwrap_err();
        assert_eq!(e.msg, "infinite recursion encountered", "{text}");
        let shown = e.at.as_deref().unwrap_or_default().trim_start();
        assert!(
            shown.starts_with(&format!("at «test»:{at}:")),
            "{text}: {shown}"
        );
    }
}

/// The first line of each `--show-trace` frame of `e` (without its position).
fn first_lines(e: &firn_eval::EvalError) -> Vec<&str> {
    e.trace
        .iter()
        .map(|t| t.lines().next().unwrap_or_default())
        .collect()
}

#[test]
fn deep_seq_goes_depth_first_and_counts_nesting() {
    let e = run("builtins.deepSeq { a = { x = throw \"x\"; }; b = throw \"b\"; } 1").unwrap_err();
    assert_eq!(e.msg, "x");
    let frames = first_lines(&e);
    assert_eq!(
        frames,
        [
            "while calling the 'throw' builtin",
            "while evaluating the attribute 'x'",
            "while evaluating the attribute 'a'",
            "while calling the 'deepSeq' builtin"
        ]
    );
    let e = run("builtins.deepSeq [ 1 (throw \"e\") ] 1").unwrap_err();
    let frames = first_lines(&e);
    assert_eq!(
        frames,
        [
            "while calling the 'throw' builtin",
            "while evaluating list element at index 1",
            "while calling the 'deepSeq' builtin"
        ]
    );
    assert_eq!(
        msg(
            "let l = builtins.foldl' (t: h: { inherit t; }) null (builtins.genList (x: x) 20000); \
             in builtins.deepSeq l 1"
        ),
        "stack overflow; max-call-depth exceeded"
    );
    // Shared and cyclic structures are entered once.
    assert_eq!(
        run("let x = { a = x; b = [ x x ]; }; in builtins.deepSeq x 1").unwrap(),
        "1"
    );
}

#[test]
fn nul_in_an_indented_string_shows_its_source() {
    assert_eq!(
        msg("''\n  a\0\n''"),
        "input string '  a\u{2400}\n' cannot be represented as Nix string because it contains \
         null bytes"
    );
}

#[test]
fn add_drv_output_dependencies_names_the_output() {
    assert_eq!(
        msg(
            "builtins.addDrvOutputDependencies (derivation { name = \"x\"; system = \"s\"; \
             builder = \"/b\"; outputs = [ \"out\" \"dev\" ]; }).dev.outPath"
        ),
        "`addDrvOutputDependencies` can only act on derivations, not on a derivation output \
         such as 'dev'"
    );
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("firn-messages-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }

    /// Write `bytes` to `name` in it; the file's path.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("writing a test file");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PIPES_OFF: &str = "experimental Nix feature 'pipe-operators' is disabled; add \
                         '--extra-experimental-features pipe-operators' to enable it";

#[test]
fn pipe_operators_need_the_experimental_feature() {
    let e = run("1 |> (x: x + 1)").unwrap_err();
    assert_eq!(e.msg, PIPES_OFF);
    assert_eq!(
        e.render(true),
        format!("{PIPES_OFF}\n       at «test»:1:3:\n            1| 1 |> (x: x + 1)\n             |   ^")
    );
    assert_eq!(run("f <| 1").unwrap_err().msg, PIPES_OFF);

    let on = |text: &str| run_with(text, |ev| ev.features.pipe_operators = true);
    assert_eq!(on("1 |> (x: x + 1)").unwrap(), "2");
    assert_eq!(
        on("[ 1 2 ] |> map (x: x * 3) |> builtins.length").unwrap(),
        "2"
    );
    assert_eq!(on("(x: x * 2) <| (x: x + 1) <| 3").unwrap(), "8");

    // Imported files follow the setting too.
    let dir = TempDir::new("pipes");
    let f = dir.file("pipes.nix", b"2 |> (x: x * 5)\n");
    assert_eq!(run(&format!("import {f}")).unwrap_err().msg, PIPES_OFF);
    assert_eq!(
        run_with(&format!("import {f}"), |ev| ev.features.pipe_operators =
            true)
        .unwrap(),
        "10"
    );
}

#[test]
fn source_files_that_are_not_utf8_are_read_as_bytes() {
    let dir = TempDir::new("bytes");
    // As upstream's eval-fail-toJSON-non-utf-8: the byte is kept, and toJSON refuses it.
    let f = dir.file("json.nix", b"builtins.toJSON \"_invalid UTF-8: \xff_\"\n");
    let e = run(&format!("import {f}")).unwrap_err();
    assert_eq!(
        e.msg,
        "JSON serialization error: [json.exception.type_error.316] invalid UTF-8 byte at index \
         16: 0xFF"
    );
    // The source line is shown with the byte itself.
    let shown = encode(&e.render(false)).into_owned();
    let line: &[u8] = b"            1| builtins.toJSON \"_invalid UTF-8: \xff_\"\n";
    assert!(
        shown.windows(line.len()).any(|w| w == line),
        "{}",
        e.render(false)
    );

    // Strings keep the bytes: printed as they are, and columns count bytes.
    let printed = run(&decode(b"\"a\xffb\xc3\"".to_vec())).unwrap();
    assert_eq!(&*encode(&printed), b"\"a\xffb\xc3\"");
    let column = decode(b"{ a = \"\xff\xfe\"; b = __curPos; }.b.column".to_vec());
    assert_eq!(run(&column).unwrap(), "17");
    // Bytes that make a character again are that character to toJSON.
    let joined = decode(b"builtins.toJSON (\"\xc3\" + \"\xa9\")".to_vec());
    assert_eq!(run(&joined).unwrap(), "\"\\\"\u{e9}\\\"\"");

    // `readFile` of a file that is not UTF-8 keeps its bytes too.
    let data = dir.file("data", b"\x80abc");
    let e = run(&format!("builtins.toJSON (builtins.readFile {data})")).unwrap_err();
    assert!(
        e.msg.ends_with("invalid UTF-8 byte at index 0: 0x80"),
        "{}",
        e.msg
    );
}

#[test]
fn messages_of_several_lines_line_up_under_the_first() {
    let e = firn_eval::EvalError::new("a\nb  \n\n  c");
    assert_eq!(e.render(false), "a\n       b\n\n         c");
    assert_eq!(
        error_line(&e.render(false)),
        "error: a\n       b\n\n         c"
    );
    // The same after frames.
    let e = run("throw \"a\\nb  \\n\\n  c\"").unwrap_err();
    assert!(e
        .render(false)
        .ends_with("\n\n       error: a\n       b\n\n         c"));
}

#[test]
fn lines_end_at_cr_lf_and_lone_cr_as_in_nix() {
    // As upstream's eval-fail-eol-2: a lone `\r` ends a line, for numbers and for the lines
    // shown.
    let e = run("# foo\rinvalid\n# bar\n").unwrap_err();
    assert_eq!(
        e.render(false),
        "undefined variable 'invalid'\n       at «test»:2:1:\n            1| # foo\n            \
         2| invalid\n             | ^\n            3| # bar"
    );
    let e = run("# a\r\n# b\r\n  x\r\n").unwrap_err();
    assert!(e
        .render(false)
        .contains("at «test»:3:3:\n            2| # b\n            3|   x\n"));
    assert_eq!(run("# a\r\r__curPos.line").unwrap(), "3");
}

#[test]
fn explained_assertions_have_no_position_of_their_own() {
    let e = run("assert 1 == 2; 0").unwrap_err();
    assert_eq!(e.at.as_deref(), Some(""));
    // Their frame says where (shown without `--show-trace` too: it is no call's).
    assert_eq!(e.render(false), e.render(true));
    assert_eq!(
        error_line(&e.render(true)),
        "error:\n       … while evaluating the condition of the assertion '(1 == 2)'\n         \
         at «test»:1:1:\n            1| assert 1 == 2; 0\n             | ^\n\n       error: an \
         integer with value '1' is not equal to an integer with value '2'"
    );
    // A plain failed assertion has its position.
    assert_eq!(
        run("assert false; 0").unwrap_err().render(false),
        "assertion 'false' failed\n       at «test»:1:1:\n            1| assert false; 0\n             | ^"
    );
}

#[test]
fn parse_errors_have_their_position_apart() {
    let e = run("let\n  ${\"a\" + \"\"} = 1;\nin\na").unwrap_err();
    assert_eq!(e.msg, "dynamic attributes not allowed in let");
    assert_eq!(
        e.at.as_deref(),
        Some("       at «test»:1:1:\n            1| let\n             | ^\n            2|   ${\"a\" + \"\"} = 1;\n")
    );
}

#[test]
fn show_trace_lists_frames_outermost_first() {
    let e = run("let s = { x = 1 + \"a\"; }; g = y: s.x; in g 1").unwrap_err();
    let shown = error_line(&e.render(true));
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "error:");
    let frames: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("       … "))
        .copied()
        .collect();
    assert_eq!(
        frames,
        [
            "       … from call site",
            "       … while calling 'g'",
            "       … while evaluating the attribute 'x'",
            "       … from the definition of 'x'"
        ]
    );
    // A frame's position is two columns further in than the error's.
    assert_eq!(lines[2], "         at «test»:1:42:");
    let error = lines
        .iter()
        .position(|l| l.starts_with("       error: "))
        .unwrap();
    // At the operand added, as current Nix.
    assert_eq!(lines[error + 1], "       at «test»:1:19:");
    assert_eq!(lines[error - 1], "");
    // Without `--show-trace`, the frames but those of the call.
    let short = e.render(false);
    let frames: Vec<&str> = short.lines().filter(|l| l.contains('…')).collect();
    assert_eq!(
        frames,
        [
            "       … while evaluating the attribute 'x'",
            "       … from the definition of 'x'"
        ]
    );
}

#[test]
fn repeated_frames_are_folded_as_current_nix_folds_them() {
    use Folded::{Frame, Omitted};
    // At most 5 repeats are shown anyway.
    let few = ["a", "b", "a", "b", "a", "b", "c"];
    assert_eq!(
        fold_frames(few.into_iter()),
        few.iter().map(|f| Frame(f)).collect::<Vec<_>>()
    );
    // More are counted; what was shown stays known for the whole listing (A×10 B×10 A×10).
    let runs: Vec<&str> = ["a"; 10]
        .into_iter()
        .chain(["b"; 10])
        .chain(["a"; 10])
        .collect();
    assert_eq!(
        fold_frames(runs.into_iter()),
        [Frame("a"), Omitted(9), Frame("b"), Omitted(19)]
    );
    // Frames without text are left out.
    assert_eq!(fold_frames(["", "a", ""].into_iter()), [Frame("a")]);

    // A recursion that fails deep down.
    let e = run("let f = n: if n == 0 then throw \"x\" else 1 + f (n - 1); in f 10").unwrap_err();
    let shown = error_line(&e.render(true));
    let outline: Vec<&str> = shown
        .lines()
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .collect();
    assert_eq!(
        outline,
        [
            "error:",
            "       … from call site",
            "         at «test»:1:60:",
            "       … while calling 'f'",
            "         at «test»:1:9:",
            // The operand of `+` that failed (as current Nix says, see upstream's
            // eval-fail-addErrorContext-example).
            "       … in an operand of '+'",
            "         at «test»:1:46:",
            "       … from call site",
            "         at «test»:1:46:",
            "       (28 duplicate frames omitted)",
            "       … while calling the 'throw' builtin",
            "         at «test»:1:27:",
            "       error: x"
        ]
    );
    // Three calls repeat only 3 frames: all shown.
    let e = run("let f = n: if n == 0 then throw \"x\" else 1 + f (n - 1); in f 2").unwrap_err();
    let shown = e.render(true);
    assert!(!shown.contains("omitted"), "{shown}");
    assert_eq!(shown.matches("… while calling 'f'").count(), 3);
}

/// Calls in tail position (which firn's evaluator makes in a loop, without nesting) get the
/// frames of nested calls, as in CppNix (upstream's eval-fail-duplicate-traces and
/// eval-fail-mutual-recursion): one "while calling" and one "from call site" for each.
#[test]
fn tail_calls_have_their_frames() {
    let e = run("let f = n: if n == 0 then throw \"x\" else f (n - 1); in f 2").unwrap_err();
    let shown = e.render(true);
    assert_eq!(shown.matches("… while calling 'f'").count(), 3, "{shown}");
    assert_eq!(shown.matches("… from call site").count(), 3, "{shown}");
    // Outermost first: the call at the top, then the recursive call site.
    let first = shown.find("… from call site").unwrap_or(usize::MAX);
    assert!(
        shown[first..].starts_with("… from call site\n         at «test»:1:56:"),
        "{shown}"
    );
}

/// The lines of an error with `--show-trace` that are neither blank nor source lines.
fn trace_outline(text: &str) -> Vec<String> {
    let e = run(text).unwrap_err();
    error_line(&e.render(true))
        .lines()
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .map(str::to_string)
        .collect()
}

#[test]
fn show_trace_names_the_builtin_called_and_its_argument() {
    // A wrong argument: the builtin's frame has the call's position, the error none.
    assert_eq!(
        trace_outline("builtins.length 1"),
        [
            "error:",
            "       … while calling the 'length' builtin",
            "         at «test»:1:1:",
            "       … while evaluating the first argument passed to builtins.length",
            "       error: expected a list but found an integer: 1",
        ]
    );
    // Without `--show-trace`, the same (no frame of a function call among them).
    let e = run("builtins.length 1").unwrap_err();
    assert_eq!(e.render(false), e.render(true));
    assert_eq!(
        trace_outline("builtins.genList (x: x) \"n\""),
        [
            "error:",
            "       … while calling the 'genList' builtin",
            "         at «test»:1:1:",
            "       … while evaluating the second argument passed to builtins.genList",
            "       error: expected an integer but found a string: \"n\"",
        ]
    );
    // `forceInt` gives the frame to an error forcing the argument too.
    assert_eq!(
        trace_outline("builtins.genList (x: x) (throw \"n\")"),
        [
            "error:",
            "       … while calling the 'genList' builtin",
            "         at «test»:1:1:",
            "       … while evaluating the second argument passed to builtins.genList",
            "       … while calling the 'throw' builtin",
            "         at «test»:1:26:",
            "       error: n",
        ]
    );
}

#[test]
fn show_trace_frames_of_functions_called_by_builtins() {
    // An error in the function `map` applied: the element is forced outside `map`, so no
    // frame of `map`'s; the lambda's call site is the lambda (`map` computed it first), as
    // current Nix's `determinePos` has it.
    assert_eq!(
        trace_outline("map (x: x + \"a\") [ 1 ]"),
        [
            "error:",
            "       … while evaluating list element at index 0",
            "       … from call site",
            "         at «test»:1:6:",
            "       … while calling anonymous lambda",
            "         at «test»:1:6:",
            "       error: cannot add a string to an integer",
            "       at «test»:1:13:",
        ]
    );
    // `foldl'` calls its function itself: its frame, then the lambda's.
    assert_eq!(
        trace_outline("builtins.foldl' (a: b: abort \"no\") 0 [ 1 ]"),
        [
            "error:",
            "       … while calling the 'foldl'' builtin",
            "         at «test»:1:1:",
            "       … while calling anonymous lambda",
            "         at «test»:1:21:",
            "       … while calling the 'abort' builtin",
            "         at «test»:1:24:",
            "       error: evaluation aborted with the following error message: 'no'",
        ]
    );
    assert_eq!(
        trace_outline("builtins.foldl' 1 0 [ 1 ]")[3],
        "       … while evaluating the first argument passed to builtins.foldlStrict"
    );
}

#[test]
fn show_trace_names_string_and_only_arguments_of_builtins() {
    // `forceString`: an error forcing the argument gets the frame too.
    assert_eq!(
        trace_outline("builtins.hasAttr (throw \"n\") { }"),
        [
            "error:",
            "       … while calling the 'hasAttr' builtin",
            "         at «test»:1:1:",
            "       … while evaluating the first argument passed to builtins.hasAttr",
            "       … while calling the 'throw' builtin",
            "         at «test»:1:19:",
            "       error: n",
        ]
    );
    assert_eq!(
        trace_outline("builtins.getAttr \"a\" [ ]")[3],
        "       … while evaluating the second argument passed to builtins.getAttr"
    );
    // A builtin of one argument whose frame says "the argument".
    assert_eq!(
        trace_outline("builtins.attrNames [ ]")[3],
        "       … while evaluating the argument passed to builtins.attrNames"
    );
    // `coerceToString`: a value that cannot be coerced gets the frame, an error forcing the
    // value does not.
    assert_eq!(
        trace_outline("builtins.toString { }")[3],
        "       … while evaluating the first argument passed to builtins.toString"
    );
    assert!(!trace_outline("builtins.toString (throw \"n\")")
        .iter()
        .any(|l| l.contains("argument passed")));
    // The result of the function a builtin calls.
    assert_eq!(
        trace_outline("builtins.filter (x: 1) [ 1 ]")[3],
        "       … while evaluating the return value of the filtering function passed to builtins.filter"
    );
    // Arithmetic builtins: the argument that is not a number, `div`'s second one first.
    assert_eq!(
        trace_outline("builtins.div \"a\" \"b\"")[3],
        "       … while evaluating the second operand of the division"
    );
}

/// The first lines of `text`'s error frames (innermost first) and its message.
fn frames_of(text: &str) -> (Vec<String>, firn_eval::EvalError) {
    let e = run(text).expect_err("the evaluation fails");
    let frames = first_lines(&e).into_iter().map(String::from).collect();
    (frames, e)
}

#[test]
fn derivation_strict_names_the_derivation_and_the_attribute() {
    let (f, e) = frames_of(
        "builtins.derivationStrict { name = \"foo\"; builder = 1; system = 1; outputs = { }; }",
    );
    assert_eq!(e.msg, "cannot coerce a set to a string: { }");
    assert_eq!(
        f,
        [
            "while evaluating attribute 'outputs' of derivation 'foo'",
            "while evaluating derivation 'foo'",
            "while calling the 'derivationStrict' builtin"
        ]
    );
    // The derivation's frame says where its name is, without the source lines.
    assert_eq!(
        e.trace[1],
        "while evaluating derivation 'foo'\n  whose name attribute is located at «test»:1:29"
    );
    assert!(e.render(true).contains(
        "       … while evaluating derivation 'foo'\n         whose name attribute is located at «test»:1:29\n"
    ));
    let (f, e) = frames_of("builtins.derivationStrict { }");
    assert_eq!(e.msg, "attribute 'name' missing");
    assert_eq!(
        f[0],
        "in the attrset passed as argument to builtins.derivationStrict"
    );
    let (f, _) = frames_of("builtins.derivationStrict { name = 1; }");
    assert_eq!(
        f[..2],
        [
            "while evaluating the `name` attribute passed to builtins.derivationStrict",
            "while evaluating the derivation attribute 'name'"
        ]
    );
    let (f, _) = frames_of(
        "builtins.derivationStrict { name = \"foo\"; builder = 1; __structuredAttrs = 15; }",
    );
    assert_eq!(
        f[0],
        "while evaluating the `__structuredAttrs` attribute passed to builtins.derivationStrict"
    );
    let (f, _) = frames_of(
        "builtins.derivationStrict { name = \"foo\"; builder = 1; system = 1; args = [ { } ]; }",
    );
    assert_eq!(
        f[..2],
        [
            "while evaluating an element of the argument list",
            "while evaluating attribute 'args' of derivation 'foo'"
        ]
    );
}

#[test]
fn a_derivation_fails_at_its_out_path() {
    // Its `outPath` is forced first (CppNix's attribute order), inside `derivation`.
    let (f, e) = frames_of(
        "derivation { name = \"~jiggle~\"; system = \"some-system\"; builder = \"/dontcare\"; }",
    );
    assert!(e.msg.starts_with("invalid derivation name: "), "{}", e.msg);
    assert_eq!(
        f,
        [
            "while evaluating derivation '~jiggle~'",
            "while calling the 'derivationStrict' builtin",
            "while selecting an attribute",
            "while evaluating the attribute 'outPath'"
        ]
    );
    let r = e.render(true);
    assert!(
        r.contains("at «nix-internal»/derivation-internal.nix:49:7:"),
        "{r}"
    );
    assert!(
        r.contains("at «nix-internal»/derivation-internal.nix:49:17:"),
        "{r}"
    );
    assert!(
        r.contains("at «nix-internal»/derivation-internal.nix:36:12:"),
        "{r}"
    );
}

#[test]
fn coercions_say_which_part_and_which_attribute() {
    let (f, e) = frames_of("\"${x: x}\"");
    assert_eq!(f, ["while evaluating a path segment"]);
    let r = e.render(true);
    assert!(r.contains("at «test»:1:2:"), "{r}");
    // The error itself has no position then.
    assert!(
        r.ends_with("error: cannot coerce a function to a string: «lambda @ «test»:1:4»"),
        "{r}"
    );
    let (f, _) = frames_of("\"\" + (let v = [ 1 ]; in v)");
    assert_eq!(f, ["while evaluating a path segment"]);
    let (f, e) = frames_of("\"${{ __toString = self: null; }}\"");
    assert_eq!(
        f,
        [
            "while evaluating a path segment",
            "while using the result of the `__toString` attribute"
        ]
    );
    assert_eq!(e.msg, "cannot coerce null to a string: null");
    let (f, e) = frames_of("\"${{ __toString = \"not a function\"; }}\"");
    assert_eq!(f, ["while calling the `__toString` attribute"]);
    assert!(e.render(true).contains("\n       at «test»:1:6:"));
    let (f, _) = frames_of("builtins.pathExists { outPath = \"a\"; }");
    assert_eq!(
        f,
        [
            "while realising the context of a path",
            "while using the `outPath` attribute",
            "while calling the 'pathExists' builtin"
        ]
    );
}

#[test]
fn operators_name_their_operand() {
    let (f, _) = frames_of("!(throw \"uh oh!\")");
    assert_eq!(
        f,
        [
            "while calling the 'throw' builtin",
            "in the argument of '!'"
        ]
    );
    let (f, _) = frames_of("let a = throw \"k\"; in (a == 1) && a");
    assert_eq!(
        f[1..],
        ["in the left operand of '=='", "in the left operand of '&&'"]
    );
    let (f, _) = frames_of("let a = throw \"k\"; in { } // a");
    assert_eq!(f[1], "in the right operand of '//'");
    let (f, _) = frames_of("let a = throw \"k\"; in a ? x");
    assert_eq!(f[1], "in the argument of '?'");
    let (f, _) = frames_of("let a = throw \"k\"; in 1 + a");
    assert_eq!(f[1], "in an operand of '+'");
    let (f, e) = frames_of("8 ++ 1");
    assert_eq!(f, ["while evaluating one of the elements to concatenate"]);
    assert!(e.render(true).contains("at «test»:1:3:"));
    // `a >= b` is `!(b < a)`: its frames are at the operator.
    let (f, e) = frames_of("let n = throw \"k\"; in n >= 1");
    assert_eq!(
        f[1..],
        [
            "while calling the 'lessThan' builtin",
            "in the argument of '!'"
        ]
    );
    assert!(!e.render(true).contains("at «test»:1:23:"));
    assert!(e.render(true).contains("at «test»:1:25:"));
    let (f, _) = frames_of("let a = { } // a; in a.foo");
    assert_eq!(
        f,
        [
            "in the right operand of '//'",
            "entering the infinite recursion",
            "while selecting an attribute"
        ]
    );
}

#[test]
fn builtins_frames_as_current_nix() {
    let (f, _) = frames_of(
        "builtins.genericClosure { startSet = [ { key = 1; } { key = \"string\"; } ]; operator = x: [ ]; }",
    );
    assert_eq!(
        f[..2],
        [
            "with element { key = 1; }",
            "while comparing element { key = \"string\"; }"
        ]
    );
    let (f, _) =
        frames_of("builtins.genericClosure { startSet = [ { nokey = 1; } ]; operator = x: [ ]; }");
    assert_eq!(f[0], "in genericClosure element { nokey = 1; }");
    let (f, _) = frames_of(
        "builtins.genericClosure { startSet = [ { key = 1; } ]; operator = x: \"not a list\"; }",
    );
    assert_eq!(
        f[..2],
        [
            "while evaluating the return value of the `operator` passed to builtins.genericClosure",
            "while calling operator on genericClosure element { key = 1; }"
        ]
    );
    let (f, _) = frames_of("builtins.listToAttrs [ { name = \"a\"; } ]");
    assert_eq!(f[0], "in a {name=...; value=...;} pair");
    let (f, e) = frames_of("builtins.listToAttrs [ { name = 1; } ]");
    assert_eq!(
        f[0],
        "while evaluating the `name` attribute of an element of the list passed to builtins.listToAttrs"
    );
    assert!(e.render(true).contains("\n       at «test»:1:26:"));
    let (f, _) = frames_of("builtins.getAttr \"foo\" { }");
    assert_eq!(f[0], "in the attribute set under consideration");
    let (f, _) = frames_of("builtins.lessThan [ 1 2 ] [ \"foo\" ]");
    assert_eq!(f[0], "while comparing two list elements");
    let (f, e) = frames_of("builtins.concatMap (x: 1) [ \"foo\" ]");
    assert_eq!(
        f[0],
        "while evaluating the return value of the function passed to builtins.concatMap"
    );
    assert!(e.render(true).contains("at «test»:1:21:"));
    let (f, _) = frames_of("let f = builtins.add f 1; in toString f");
    assert_eq!(
        f,
        [
            "while calling the 'add' builtin",
            "entering the infinite recursion",
            "while calling the 'toString' builtin"
        ]
    );
}

#[test]
fn to_json_says_which_attribute_and_element() {
    let (f, e) = frames_of("builtins.toJSON { a.b = [ true { c = throw \"hah no\"; } ]; }");
    assert_eq!(e.msg, "hah no");
    assert_eq!(
        f,
        [
            "while calling the 'throw' builtin",
            "while evaluating attribute 'c'",
            "while evaluating list element at index 1",
            "while evaluating attribute 'b'",
            "while evaluating attribute 'a'",
            "while calling the 'toJSON' builtin"
        ]
    );
    let (f, e) = frames_of("builtins.toJSON { __toString = self: { a = 1; }; }");
    assert_eq!(f[0], "while using the result of the `__toString` attribute");
    assert_eq!(
        e.msg,
        "`__toString` must return a string, but got a set: { a = 1; }"
    );
    assert!(e.render(true).contains("\n       at «test»:1:19:"));
}

/// The column of `e`'s own position (`at FILE:LINE:COL:`), if it has one.
fn at_column(e: &firn_eval::EvalError) -> Option<u32> {
    let first = e.at.as_deref()?.lines().next()?;
    first.trim_end_matches(':').rsplit(':').next()?.parse().ok()
}

#[test]
fn selections_have_their_frames_as_current_nix() {
    // The attribute found last ("from the definition of"), then the selection itself.
    let e = run("let attrs = { puppy.doggy = { }; }; key = 1; in attrs.puppy.${key}").unwrap_err();
    assert_eq!(e.msg, "expected a string but found an integer: 1");
    assert_eq!(
        first_lines(&e),
        [
            "while evaluating an attribute name",
            "from the definition of 'puppy'",
            "while evaluating the attribute 'puppy.\"${key}\"'"
        ]
    );
    assert_eq!(at_column(&e), Some(63));
    // `let { body = ...; }` selects `body`; a missing attribute has no position of its own.
    let e = run("let { attrs = { x = 1; y = 2; }; body = (removeAttrs attrs [ \"x\" ]).x; }")
        .unwrap_err();
    assert_eq!(e.msg, "attribute 'x' missing");
    assert_eq!(
        first_lines(&e),
        [
            "while evaluating the attribute 'x'",
            "from the definition of 'body'",
            "while evaluating the attribute 'body'"
        ]
    );
    let shown = e.render(true);
    assert!(
        shown.ends_with("\n       error: attribute 'x' missing\n       Did you mean y?"),
        "{shown}"
    );
}

#[test]
fn lambda_arguments_are_wrong_at_the_lambda() {
    let e = run("({ x, z }: x + z) { x = \"foo\"; y = \"bar\"; z = \"baz\"; }").unwrap_err();
    assert_eq!(
        e.msg,
        "function 'anonymous lambda' called with unexpected argument 'y'"
    );
    // No "while calling" frame: the body was never entered.
    assert_eq!(first_lines(&e), ["from call site"]);
    assert_eq!(at_column(&e), Some(2));
    assert!(e
        .render(false)
        .ends_with("\n       Did you mean one of x or z?"));
    let e = run("(foo@{ }: 1) { a = 3; }").unwrap_err();
    assert_eq!(first_lines(&e), ["from call site"]);
    assert_eq!(e.suggestions, Vec::<String>::new());
    let e = run("let f = { a }: a; in f { }").unwrap_err();
    assert_eq!(e.msg, "function 'f' called without required argument 'a'");
    assert_eq!(at_column(&e), Some(9));
}

#[test]
fn errors_at_the_operand_or_definition_current_nix_names() {
    let text = "let a = 9223372036854775807; b = 1; in a + b";
    let e = run(text).unwrap_err();
    assert_eq!(e.msg, "integer overflow in adding 9223372036854775807 + 1");
    assert_eq!(at_column(&e), Some(text.len() as u32));
    let e = run("1 + \"foo\"").unwrap_err();
    assert_eq!(e.msg, "cannot add a string to an integer");
    assert_eq!(at_column(&e), Some(5));
    // A repeated dynamic attribute is at its second definition.
    let e = run("{ \"${\"b\"}\" = 1; \"${\"b\"}\" = 2; }").unwrap_err();
    assert!(
        e.msg
            .starts_with("dynamic attribute 'b' already defined at "),
        "{}",
        e.msg
    );
    assert_eq!(at_column(&e), Some(17));
    // `__overrides` that is not a set: only its frame.
    let e = run("rec { __overrides = 1; }").unwrap_err();
    assert_eq!(
        e.render(true).matches(" at ").count(),
        0,
        "{}",
        e.render(true)
    );
}

#[test]
fn a_bad_hash_algorithm_is_a_usage_error() {
    let e = run("builtins.hashString \"foo\" \"content\"").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage);
    assert!(!e.catchable());
    let e =
        run("builtins.convertHash { hash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; hashAlgo = \"sha256\"; toHashFormat = \"x\"; }")
            .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage, "{}", e.msg);
}

#[test]
fn a_nul_in_a_quoted_string_is_after_the_quote() {
    let e = run("\"foo\u{0}bar\"").unwrap_err();
    assert!(
        e.at.as_deref().unwrap_or_default().contains("«test»:1:2:"),
        "{:?}",
        e.at
    );
}

#[test]
fn calls_made_by_builtins_have_their_call_site() {
    // A lambda applied by a builtin: "from call site" at the lambda, as current Nix's
    // `determinePos` has it.
    assert_eq!(
        trace_outline("builtins.genList (x: x + \"foo\") 2"),
        [
            "error:",
            "       … while evaluating list element at index 0",
            "       … from call site",
            "         at «test»:1:19:",
            "       … while calling anonymous lambda",
            "         at «test»:1:19:",
            "       error: cannot add a string to an integer",
            "       at «test»:1:26:",
        ]
    );
    // Applied to a name first: the call site is the function the name was given to.
    let shown = trace_outline("builtins.zipAttrsWith (a: b: a + b) [ { foo = 1; } ]");
    assert_eq!(
        shown[2..5],
        [
            "       … from call site",
            "         at «test»:1:24:",
            "       … while calling anonymous lambda"
        ],
        "{shown:?}"
    );
    // ... and something not a function called there has that position.
    let shown = trace_outline("builtins.zipAttrsWith (_: 1) [ { foo = 1; } ]");
    assert_eq!(shown.last().unwrap(), "       at «test»:1:24:", "{shown:?}");
    // Unless that function was not computed before (`mapAttrs` does not force it).
    let shown = trace_outline("builtins.mapAttrs (x: y: x + 1) { foo.bar = 1; }");
    assert!(
        !shown.iter().any(|l| l.contains("from call site")),
        "{shown:?}"
    );
    let shown = trace_outline("builtins.mapAttrs (x: x + \"1\") { foo.bar = 1; }");
    assert!(
        shown
            .last()
            .unwrap()
            .starts_with("       error: attempt to call"),
        "{shown:?}"
    );
}

/// The lines of an error without `--show-trace` that are neither blank nor source lines.
fn short_outline(text: &str) -> Vec<String> {
    let e = run(text).unwrap_err();
    error_line(&e.render(false))
        .lines()
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .map(str::to_string)
        .collect()
}

/// Without `--show-trace`, current Nix's short trace: no frames of function calls; frames
/// until they count more than 3 (one with a position twice), then only those always shown
/// (`addErrorContext`'s, derivations'), and a note that the trace was truncated.
#[test]
fn frames_without_show_trace_are_few() {
    let text = "let\n  countDown =\n    n:\n    if n == 0 then\n      throw \"kaboom\"\n    \
                else\n      builtins.addErrorContext \"while counting down; n = ${toString n}\" \
                (\"x\" + countDown (n - 1));\nin\ncountDown 3";
    assert_eq!(
        short_outline(text),
        [
            "error:",
            "       … while counting down; n = 3",
            "       … in an operand of '+'",
            "         at «test»:7:80:",
            "       … while counting down; n = 2",
            "       … while counting down; n = 1",
            "       (stack trace truncated; use '--show-trace' to show the full, detailed trace)",
            "       error: kaboom",
        ]
    );
    // Few frames: all of them, and no note.
    assert_eq!(
        short_outline("let f = x: builtins.length x; in f 1"),
        [
            "error:",
            "       … while calling the 'length' builtin",
            "         at «test»:1:12:",
            "       … while evaluating the first argument passed to builtins.length",
            "       error: expected a list but found an integer: 1",
        ]
    );
    // Only frames of calls: the message and its position alone.
    let e = run("let f = x: x + \"a\"; in f 1").unwrap_err();
    assert!(
        e.render(false).starts_with("cannot add"),
        "{}",
        e.render(false)
    );
}

/// A thunk that failed keeps its error (current Nix since 2.34): forced again, it gives a
/// copy of the error as it was caught, whose later frames do not change what it keeps.
#[test]
fn failed_thunks_keep_their_error() {
    let text = "let\n  a = throw \"nope\";\n  b = builtins.addErrorContext \"forcing b\" a;\n  \
                c = builtins.addErrorContext \"forcing c\" a;\n  d = builtins.addErrorContext \
                \"forcing d\" a;\nin\nbuiltins.seq (builtins.tryEval b) (builtins.seq \
                (builtins.tryEval c) d)";
    let outline: Vec<String> = trace_outline(text)
        .into_iter()
        .filter(|l| l.starts_with("       … "))
        .collect();
    assert_eq!(
        outline,
        [
            "       … while calling the 'seq' builtin",
            "       … while calling the 'seq' builtin",
            "       … forcing d",
            "       … forcing b",
            "       … while calling the 'throw' builtin",
        ]
    );
    // An error no `tryEval` caught is not kept: the thunk is computed again.
    assert_eq!(
        run(
            "let a = throw \"x\"; in [ (builtins.tryEval a).success (builtins.tryEval a).success ]"
        )
        .unwrap(),
        "[ false false ]"
    );
}

/// Attribute names in messages are shown as current Nix shows a symbol: bare when they could
/// be a variable name, quoted and escaped otherwise (nixpkgs' `lib.fileset` tests match
/// `unexpected argument '"lib.fileset..."'`).
#[test]
fn names_in_messages_are_quoted_when_not_identifiers() {
    let msg = |text: &str| run(text).unwrap_err().msg.clone();
    assert_eq!(
        msg("({ a = 1; }).${\"a.b\"}"),
        "attribute '\"a.b\"' missing"
    );
    assert_eq!(msg("({ a = 1; }).b"), "attribute 'b' missing");
    assert_eq!(msg("({ a = 1; }).${\"if\"}"), "attribute '\"if\"' missing");
    assert_eq!(
        msg("builtins.getAttr \"x y\" { }"),
        "attribute '\"x y\"' missing"
    );
    assert_eq!(
        msg("({ a }: a) { a = 1; \"b c\" = 2; }"),
        "function 'anonymous lambda' called with unexpected argument '\"b c\"'"
    );
}
