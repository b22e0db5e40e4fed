//! The parser on its own: every construct, precedence, strings, errors and their positions,
//! deep nesting, and arbitrary bytes (no panic, ever).

use firn_syntax::show::show;
use firn_syntax::{parse, parse_syntax, render_error, Interner, Source};

/// The error of a full parse, scope check included.
fn unbound(text: &str) -> String {
    let mut i = Interner::default();
    match parse(text, &src(), &mut i) {
        Ok(e) => panic!("{text:?} parsed as {}", show(&i, &e)),
        Err(e) => e.msg,
    }
}

fn src() -> Source<'static> {
    Source {
        origin: "«string»",
        base_dir: "/base",
        home: "/home/u",
        pipe_operators: true,
        lints: Default::default(),
    }
}

fn p(text: &str) -> String {
    let mut i = Interner::default();
    match parse_syntax(text, &src(), &mut i) {
        Ok(e) => show(&i, &e),
        Err(e) => panic!("{text:?} failed: {}", render_error(&e, text, "«string»")),
    }
}

/// A syntax error (variables are not checked).
fn fails(text: &str) -> String {
    let mut i = Interner::default();
    match parse_syntax(text, &src(), &mut i) {
        Ok(e) => panic!("{text:?} parsed as {}", show(&i, &e)),
        Err(e) => e.msg,
    }
}

#[test]
fn precedence_and_desugaring() {
    assert_eq!(p("1 + 2 * 3"), "(1 + (__mul 2 3))");
    assert_eq!(p("1 - 2 - 3"), "(__sub (__sub 1 2) 3)");
    assert_eq!(p("-1"), "(__sub 0 1)");
    assert_eq!(p("- f x"), "(__sub 0 (f x))");
    assert_eq!(
        p("!a && b || c -> d"),
        "(((! a) && b) || c) -> d"
            .replace("(((! a) && b) || c) -> d", "((((! a) && b) || c) -> d)")
    );
    assert_eq!(p("a -> b -> c"), "(a -> (b -> c))");
    assert_eq!(p("a // b // c"), "(a // (b // c))");
    assert_eq!(p("a ++ b ++ c"), "(a ++ (b ++ c))");
    assert_eq!(p("a < b"), "(__lessThan a b)");
    assert_eq!(p("a > b"), "(__lessThan b a)");
    assert_eq!(p("a <= b"), "(! (__lessThan b a))");
    assert_eq!(p("a >= b"), "(! (__lessThan a b))");
    assert_eq!(p("!a == b"), "((! a) == b)");
    assert_eq!(p("a ? b.c"), "((a) ? b.c)");
    assert_eq!(p("a.b.c or d"), "(a).b.c or (d)");
    assert_eq!(p("f a.b c"), "(f (a).b c)");
    assert_eq!(p("x |> f |> g"), "(g (f x))");
    assert_eq!(p("g <| f <| x"), "(g (f x))");
    assert_eq!(p("map or [ ]"), "(map or [ ])");
    fails("a == b == c");
    fails("a < b < c");
    fails("x |> f <| y");
}

/// Where some parse errors are, as CppNix's parser puts them.
#[test]
fn parse_error_positions() {
    let at = |text: &str| {
        let mut i = Interner::default();
        let e = parse_syntax(text, &src(), &mut i).expect_err(text);
        firn_syntax::line_col(text.as_bytes(), e.span.start as usize)
    };
    // After the slash (the end of the file here).
    assert_eq!(at("# c\n/nix/store/"), (2, 12));
    assert_eq!(at("[ ./a/ ]"), (1, 7));
    // At the `let`, once it is read whole (a syntax error in its body comes first).
    assert_eq!(at("let\n  ${a} = 1;\nin\na"), (1, 1));
    assert_eq!(at("x: let \"${a}\" = 1; in a"), (1, 4));
    assert!(fails("let ${a} = 1; in )").starts_with("syntax error"));
    // Lines end at `\n`, `\r\n` and a lone `\r`; columns count bytes.
    assert_eq!(at("#\r#\r\n#\n  )"), (4, 3));
    assert_eq!(firn_syntax::line_starts(b"a\r\nb\rc\n"), [0, 3, 5, 7]);
}

/// Without the `pipe-operators` feature, `|>` and `<|` are refused where they are read, as
/// CppNix's lexer does (even where a syntax error would follow).
#[test]
fn pipe_operators_need_their_feature() {
    let off = Source {
        pipe_operators: false,
        ..src()
    };
    for (text, col) in [
        ("1 |> 2", 3),
        ("f <| x", 3),
        ("[ (x) |> ]", 7),
        ("a |> b <| c", 3),
    ] {
        let mut i = Interner::default();
        let e = parse_syntax(text, &off, &mut i).expect_err(text);
        assert_eq!(
            render_error(&e, text, "«string»"),
            format!(
                "error: experimental Nix feature 'pipe-operators' is disabled; add \
                 '--extra-experimental-features pipe-operators' to enable it\n       \
                 at «string»:1:{col}:\n            1| {text}\n             | {}^\n",
                " ".repeat(col - 1)
            )
        );
    }
    // An earlier syntax error comes first; `||`, `>` and a string are not the operator.
    let mut i = Interner::default();
    let e = parse_syntax("1 ) |> 2", &off, &mut i).expect_err("syntax error");
    assert!(e.msg.starts_with("syntax error"), "{}", e.msg);
    for text in ["a || b > c", "\"|>\" + ''<|''", "# |>\n1"] {
        assert!(parse_syntax(text, &off, &mut i).is_ok(), "{text}");
    }
}

#[test]
fn literals() {
    assert_eq!(p("123"), "123");
    assert_eq!(p("1.5e3"), "1500");
    assert_eq!(p(".5"), "0.5");
    assert_eq!(p("./a/../b"), "/base/b");
    assert_eq!(p("/x/./y"), "/x/y");
    assert_eq!(p("~/z"), "/home/u/z");
    assert_eq!(p("<nixpkgs/lib>"), "(__findFile __nixPath \"nixpkgs/lib\")");
    assert_eq!(p("http://example.org/?a=b"), "\"http://example.org/?a=b\"");
    assert_eq!(p("./a/${b}/c"), "(/base/a/ + b + \"/c\")");
    assert_eq!(p("__curPos"), "__curPos");
    assert!(fails("9223372036854775808").contains("invalid integer"));
    assert!(fails("./a/").contains("trailing slash"));
}

#[test]
fn strings() {
    assert_eq!(p(r#""a\nb\t\"\\\$\{x}""#), r#""a\nb\t\"\\\${x}""#);
    assert_eq!(p(r#""a${b}c""#), r#"("a" + b + "c")"#);
    assert_eq!(p(r#""$${x}""#), r#""$\${x}""#);
    assert_eq!(p("''\n  a\n    b\n  ''"), r#""a\n  b\n""#);
    // Escapes stay separate parts, as in CppNix.
    assert_eq!(p("''''$ ''' ''\\n''"), r#"("$" + " " + "''" + " " + "\n")"#);
    assert_eq!(p("'' a ${b} ''"), r#"("a " + b + " ")"#);
    // An escaped character is taken whole, whatever follows it.
    assert_eq!(p("''x''\\é€y''"), r#"("x" + "é" + "€y")"#);
    assert_eq!(
        p("{ \"a b\" = 1; ${\"c\"} = 2; ${d} = 3; }"),
        "{ a b = 1; c = 2; \"${d}\" = 3; }"
    );
    assert!(fails("\"abc").contains("end of file"));
    assert!(fails("''abc").contains("end of file"));
}

#[test]
fn bindings_and_functions() {
    assert_eq!(p("{ a.b = 1; a.c = 2; }"), "{ a = { b = 1; c = 2; }; }");
    assert_eq!(
        p("let a = 1; inherit (x) b c; in a"),
        "(let inherit (x) b c; a = 1; in a)"
    );
    assert_eq!(p("rec { a = 1; b = a; }"), "rec { a = 1; b = a; }");
    assert_eq!(p("let { body = 1; }"), "(rec { body = 1; }).body");
    assert_eq!(
        p("{ a, b ? 1, ... }@args: a"),
        "({ a, b ? 1, ... } @ args: a)"
    );
    assert_eq!(p("args@{ }: args"), "({  } @ args: args)");
    assert_eq!(p("x: y: x"), "(x: (y: x))");
    assert_eq!(p("with x; assert y; z"), "(with x; assert y; z)");
    assert_eq!(p("if a then b else c"), "(if a then b else c)");
    assert!(fails("{ a = 1; a = 2; }").contains("attribute 'a' already defined at «string»:1:3"));
    assert!(fails("{ a, a }: a").contains("duplicate formal function argument 'a'"));
    assert!(fails("let ${x} = 1; in 2").contains("dynamic attributes not allowed in let"));
    assert_eq!(p("let ${\"x\"} = 1; in x"), "(let x = 1; in x)");
    assert!(unbound("x").contains("undefined variable 'x'"));
    assert!(unbound("let x = y; in x").contains("undefined variable 'y'"));
    assert!(unbound("{ a, b ? a }: c").contains("undefined variable 'c'"));
    let mut i = Interner::default();
    assert!(parse(
        "{ a, b ? a }: let c = b; in rec { d = c; e = d; } // builtins.x",
        &src(),
        &mut i
    )
    .is_ok());
    assert_eq!(p("with {}; y"), "(with { }; y)");
    // `inherit` in a recursive set still takes the name from outside.
    assert!(unbound("rec { inherit b; a = 1; }").contains("undefined variable 'b'"));
    assert!(fails("rec { inherit a; a = 1; }").contains("attribute 'a' already defined"));
}

#[test]
fn errors_point_at_the_problem() {
    let text = "let\n  x = 1;\n  y = ;\nin x";
    let mut i = Interner::default();
    let e = parse(text, &src(), &mut i).unwrap_err();
    let r = render_error(&e, text, "«string»");
    assert_eq!(
        r,
        "error: syntax error, unexpected ';'\n       at «string»:3:7:\n            2|   x = 1;\n            3|   y = ;\n             |       ^\n            4| in x\n"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for (open, close) in [
        ("(", ")"),
        ("[", "]"),
        ("{a=", ";}"),
        ("x: ", ""),
        ("-", ""),
        ("!", ""),
    ] {
        let n = 100_000;
        let text = format!("{}1{}", open.repeat(n), close.repeat(n));
        let mut i = Interner::default();
        let r = parse(&text, &src(), &mut i);
        assert!(r.is_err(), "{open}");
        let msg = r.unwrap_err().msg;
        assert!(msg.contains("nested too deeply"), "{open}: {msg}");
    }
    // Moderate nesting is fine.
    let text = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
    assert_eq!(p(&text), "1");
    let chain = format!("a{}", ".b".repeat(10_000));
    let mut i = Interner::default();
    assert!(parse(&format!("let a = {{}}; in {chain}"), &src(), &mut i).is_ok());
}

#[test]
fn arbitrary_input_never_panics() {
    // A deterministic generator over Nix-ish fragments and raw bytes.
    let frags = [
        "{", "}", "[", "]", "(", ")", ";", ":", ".", ",", "@", "?", "=", "+", "-", "*", "/", "!",
        "<", ">", "\"", "''", "${", "$", "\\", "'", "a", "or", "let", "in", "rec", "inherit", "if",
        "then", "else", "with", "assert", "...", "1", "1.5", "./p", "~/h", "<s>", "x:y", " ", "\n",
        "#c\n", "/*", "*/", "é", "\r", "\t", "|>", "<|", "//", "++", "->",
    ];
    let mut state: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..(state % 24) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(frags[(state >> 33) as usize % frags.len()]);
        }
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut i = Interner::default();
        if let Err(e) =
            firn_syntax::parser::Parser::new(&text, &mut i, "«t»", "/b", "/h").parse_file()
        {
            let _ = render_error(&e, &text, "«t»");
        }
    }
}

/// Each variable node of `text`, in source order, with what `look` finds in it: the scope
/// check's records, read by the two tests below.
fn variables<T>(text: &str, look: impl Fn(&firn_syntax::ast::Expr) -> T) -> Vec<(String, T)> {
    use firn_syntax::ast::{Expr, ExprKind};

    fn collect<T>(e: &Expr, i: &Interner, look: &impl Fn(&Expr) -> T, out: &mut Vec<(String, T)>) {
        if let ExprKind::Var(s) = &e.kind {
            out.push((i.name(*s).to_string(), look(e)));
        }
        let mut go = |x: &Expr| collect(x, i, look, out);
        match &e.kind {
            ExprKind::Lambda { body, formals, .. } => {
                if let Some(f) = formals {
                    for x in &f.formals {
                        if let Some(d) = &x.default {
                            go(d);
                        }
                    }
                }
                go(body)
            }
            ExprKind::Let { attrs, body } => {
                for d in attrs.attrs.values() {
                    go(&d.value);
                }
                go(body)
            }
            ExprKind::With { env, body } => {
                go(env);
                go(body)
            }
            ExprKind::Attrs(a) => {
                for d in a.attrs.values() {
                    go(&d.value);
                }
            }
            ExprKind::Call { fun, args } => {
                go(fun);
                args.iter().for_each(go);
            }
            ExprKind::List(items) => items.iter().for_each(go),
            _ => {}
        }
    }
    let mut i = Interner::default();
    // Intern in a known order, so symbol order is alphabetical here.
    for n in ["a", "b", "c", "f", "s", "x", "y", "z"] {
        i.intern(n);
    }
    let e = parse(text, &src(), &mut i).expect("parses");
    let mut out = Vec::new();
    collect(&e, &i, &look, &mut out);
    out
}

/// The addresses the scope check gives variables (scopes out, position among the scope's
/// names sorted by symbol), for each kind of scope the evaluator pushes.
#[test]
fn variable_addresses() {
    let addresses = |text: &str| variables(text, firn_syntax::scope::var_address);
    let v = |n: &str, a: Option<(usize, usize)>| (n.to_string(), a);
    // A plain lambda's argument, one scope out from inside a nested lambda.
    assert_eq!(
        addresses("x: y: [ x y ]"),
        [v("x", Some((1, 0))), v("y", Some((0, 0)))]
    );
    // Formals and the `@` name share one scope, sorted by symbol.
    assert_eq!(
        addresses("s@{ z, a ? z }: [ a s z ]"),
        [
            v("z", Some((0, 2))),
            v("a", Some((0, 0))),
            v("s", Some((0, 1))),
            v("z", Some((0, 2)))
        ]
    );
    // `let` and `rec` bind their names sorted by symbol; `inherit x` in a `rec` set looks
    // in the scope outside the set.
    assert_eq!(
        addresses("x: let c = x; a = c; in rec { b = a; inherit x; }"),
        [
            v("c", Some((0, 1))),
            v("x", Some((1, 0))),
            v("a", Some((1, 0))),
            v("x", Some((1, 0)))
        ]
    );
    // A `with` is a scope of its own (with no names): variables it may bind have no address.
    assert_eq!(
        addresses("f: with f; [ f a ]"),
        [v("f", Some((0, 0))), v("f", Some((1, 0))), v("a", None)]
    );
}

/// A variable only a `with` can bind knows how many scopes out the innermost `with` is
/// (`with_address`), and has no lexical address.
#[test]
fn with_addresses() {
    use firn_syntax::scope::{var_address, with_address};

    let withs = |text: &str| {
        variables(text, |e| {
            assert!(with_address(e).is_none() || var_address(e).is_none());
            with_address(e)
        })
    };
    let v = |n: &str, a: Option<usize>| (n.to_string(), a);
    // Directly inside the `with`, and under a lambda and a `let` inside it.
    assert_eq!(
        withs("f: with f; [ a (x: [ b x ]) (let y = c; in [ y d ]) ]"),
        [
            v("f", None),
            v("a", Some(0)),
            v("b", Some(1)),
            v("x", None),
            v("c", Some(1)),
            v("y", None),
            v("d", Some(1))
        ]
    );
    // Nested `with`s: the innermost one is meant; the outer `with`'s expression is looked
    // up from outside it.
    assert_eq!(
        withs("f: with f; with b; x: [ a x ]"),
        [v("f", None), v("b", Some(0)), v("a", Some(1)), v("x", None)]
    );
    // Outside every `with`, a variable bound nowhere is a global or an error, never one.
    assert_eq!(withs("let a = 1; in [ a ]"), [v("a", None)]);
}

/// Current Nix's lints of literals (`lint-*-literals`): ignored by default; `warn` hands
/// the warnings back with the tree; `fatal` is a parse error at the literal.
#[test]
fn lints_of_literals() {
    use firn_syntax::{parse_linted, render_warning, Diagnose, Lints};
    let with = |level: Diagnose| Lints {
        short_path_literals: level,
        absolute_path_literals: level,
        url_literals: level,
    };
    let text = "[ ./a a/b /c ~/d http://e.org ../f \"g\" ]";
    let run = |lints: Lints| {
        let s = Source { lints, ..src() };
        parse_linted(text, &s, &mut Interner::default())
    };
    assert!(run(Lints::default()).expect("parses").warnings.is_empty());
    let found = run(with(Diagnose::Warn)).expect("parses").warnings;
    let msgs: Vec<&str> = found.iter().map(lint_msg).collect();
    assert_eq!(
        msgs,
        [
            "relative path literal 'a/b' should be prefixed with '.' for clarity: './a/b' \
             (lint-short-path-literals)",
            "absolute path literals are not portable. Consider replacing path literal '/c' by \
             a string, relative path, or parameter (lint-absolute-path-literals)",
            "home path literals are not portable. Consider replacing path literal '~/d' by a \
             string, relative path, or parameter (lint-absolute-path-literals)",
            "URL literals are discouraged. Consider using a string literal \"http://e.org\" \
             instead (lint-url-literals)",
        ]
    );
    // As current Nix logs it: the location under `warning: `.
    assert_eq!(
        render_warning(&found[0], text, "«string»"),
        format!(
            "warning: {}\n         at «string»:1:7:\n              1| {text}\n               |       ^",
            msgs[0]
        )
    );
    // Fatal: the first one is the error, worded as such for URLs.
    let e = run(with(Diagnose::Fatal)).expect_err("fails");
    assert_eq!((e.msg.as_str(), e.span.start), (msgs[0], 6));
    let only_urls = Lints {
        url_literals: Diagnose::Fatal,
        ..Lints::default()
    };
    let e = run(only_urls).expect_err("fails");
    assert!(
        e.msg.starts_with("URL literals are disallowed."),
        "{}",
        e.msg
    );
    // An interpolated path is linted by its first part, as written.
    let s = Source {
        lints: with(Diagnose::Warn),
        ..src()
    };
    let w = parse_linted("x: a/${x}/b", &s, &mut Interner::default())
        .expect("parses")
        .warnings;
    assert!(
        lint_msg(&w[0]).starts_with("relative path literal 'a/'"),
        "{w:?}"
    );
    assert_eq!("fatal".parse(), Ok(Diagnose::Fatal));
    assert!("loud".parse::<Diagnose>().is_err());
}

fn lint_msg(w: &firn_syntax::ParseWarning) -> &str {
    match w {
        firn_syntax::ParseWarning::Lint(e) => &e.msg,
        other => panic!("not a lint: {other:?}"),
    }
}

/// Current Nix warns where the legacy `e or` (a call of `e` with the variable `or`) is an
/// argument, a list element or a select's default, which its future grammar reads
/// otherwise; not where it is the function of a call or stands alone.
#[test]
fn legacy_or_calls_warn_where_current_nix_does() {
    use firn_syntax::{parse_linted, render_warning, ParseWarning};
    let text = "let or = 1; g = x: x; in [\n  (g (g or))\n  (g or)\n  (g or g)\n  \
                ({ }.b or g or)\n  ([ g or ])\n  (g (\n g or))\n  (g g or)\n]";
    let w = parse_linted(text, &src(), &mut Interner::default())
        .expect("parses")
        .warnings;
    let at: Vec<&str> = w
        .iter()
        .map(|w| match w {
            ParseWarning::CursedOr(s) => &text[s.start as usize..s.end as usize],
            other => panic!("not a legacy `or`: {other:?}"),
        })
        .collect();
    assert_eq!(at, ["g or", "g or", "g or"], "{w:?}");
    assert_eq!(
        render_warning(&w[0], text, "/f.nix"),
        "warning: at /f.nix:5:13: This expression uses `or` as an identifier in a way that \
         will change in a future Nix release.\nWrap this entire expression in parentheses to \
         preserve its current meaning:\n    (g or)\nGive feedback at \
         https://github.com/NixOS/nix/pull/11121"
    );
}

#[test]
fn locations_at_the_edges_of_the_text() {
    use firn_syntax::render_location;
    let text = "a\r\nbb\rccc\n";
    // First line: no line before it.
    assert_eq!(
        render_location(text, "f", 0),
        "       at f:1:1:\n            1| a\n             | ^\n            2| bb\n"
    );
    // After a lone `\r`, a new line.
    assert_eq!(
        render_location(text, "f", 7),
        "       at f:3:2:\n            2| bb\n            3| ccc\n             |  ^\n            4|\n"
    );
    // The end of the text: the empty last line, nothing after it.
    assert_eq!(
        render_location(text, "f", text.len() + 5),
        "       at f:4:1:\n            3| ccc\n            4|\n             | ^\n"
    );
}
