//! A file parsed apart ([`parse_detached`], with a mirror of an interner) and attached to
//! that interner gives the very tree, scope addresses and interner a parse with the interner
//! gives, whatever names it held before (their order decides the order of sets' bindings
//! and scopes), and whether or not it interned more names between the parse and the
//! attaching.

use firn_syntax::detach::parse_detached;
use firn_syntax::{parse_with_names_here, Interner, Source};

fn src() -> Source<'static> {
    Source {
        origin: "/base/f.nix",
        base_dir: "/base",
        home: "/home/u",
        pipe_operators: true,
        lints: Default::default(),
    }
}

/// Names the snippets use, interned beforehand in an order unlike the order they appear in.
const SEEDS: &[&str] = &[
    "z",
    "y",
    "x",
    "self",
    "pkgs",
    "h",
    "g",
    "f",
    "e",
    "d",
    "c",
    "b",
    "a",
    "__sub",
    "or",
    "lib",
    "__lessThan",
    "outPath",
    "__mul",
];

/// Names interned between a detached parse and its attaching, in the tests' second case:
/// some the snippets use, some not.
const MEANWHILE: &[&str] = &["d", "zzz", "args", "w", "self", "q", "inner"];

/// Compare the two ways on `text`, with the interner seeded by `seed` (the mirror a copy of
/// it): attached at once, and after more names were interned; returns whether the text
/// parsed.
fn same(text: &str, seed: &[&str]) -> bool {
    // Small texts: the test thread's stack is enough for the parser.
    let mut base = Interner::default();
    for s in seed {
        base.intern(s);
    }
    let mut mirror = base.clone();
    let detached = parse_detached(text, &src(), &mut mirror);
    assert_eq!(mirror.len(), base.len(), "the mirror forgets the new names");
    let mut grown = base.clone();
    for s in MEANWHILE {
        grown.intern(s);
    }
    let mut parsed = None;
    for at in [base, grown] {
        let mut direct_int = at.clone();
        let direct = parse_with_names_here(text, &src(), &mut direct_int, &[]);
        let mut att_int = at.clone();
        let ok = match (direct, detached.clone()) {
            (Ok(a), Ok(d)) => {
                let b = d
                    .attach(&mut att_int)
                    .unwrap_or_else(|e| panic!("{text:?}: attach failed: {}", e.msg));
                assert_eq!(a.expr, b.expr, "{text:?}: trees differ");
                assert_eq!(
                    a.warnings.len(),
                    b.warnings.len(),
                    "{text:?}: warnings differ"
                );
                assert_eq!(
                    direct_int.into_names(),
                    att_int.into_names(),
                    "{text:?}: interners differ"
                );
                true
            }
            (Err(a), Ok(_)) => panic!("{text:?}: parsed apart although a parse fails: {}", a.msg),
            (Ok(_), Err(d)) => panic!("{text:?}: detached parse failed: {}", d.msg),
            // The same error (the scope check's is found the same way; a syntax error's
            // may differ where several are possible, and is then found again in place).
            (Err(a), Err(d)) => {
                if a.msg.starts_with("undefined variable") {
                    assert_eq!((a.msg, a.span), (d.msg, d.span), "{text:?}");
                }
                false
            }
        };
        assert!(parsed.is_none_or(|p| p == ok));
        parsed = Some(ok);
    }
    parsed == Some(true)
}

#[test]
fn snippets_attach_to_the_same_tree() {
    let snippets = [
        "1",
        "x: x",
        "a: b: a - b * b < a",
        "{ a, b ? a, ... }@args: [ a b args ]",
        "args@{ z, y ? 1 }: z + y",
        "let b = 1; a = b; in rec { c = a; d = c; inherit a; inherit (builtins) head; }",
        "rec { a.b.c = 1; a.b.d = 2; a = { e = 3; inherit (x) f; }; x = { }; }",
        "rec { y = { a = 1; }; y.b = 2; x.inner = { inherit (y) a; }; x.other = 3; }",
        "rec { z = 1; ${\"dyn\"} = 2; y = z; }",
        "x: x.a.b or x.c",
        "x: x ? a.b.\"c\"",
        "x: with x; a + b",
        "x: if x.c then x.a else x.b",
        "x: assert x.ok; x",
        "let f = self: { g = self.h; h = 1; }; in f (f { })",
        "x: \"pre ${x.a} mid ${toString x.b} post\"",
        "x: ''\n  ${x.y}\n  ''${z}\n''",
        "x: ./dir/${x}/file.nix",
        "x: !x.a && x.b || x.c -> x.d",
        "x: y: x // y ++ [ x ] == y",
        "let { body = a; a = 1; }",
        "{ lib, pkgs, ... }: { options.foo = lib.mkOption { }; config.bar = pkgs.h; }",
        "let inherit (builtins) map; in map (x: x) [ ]",
        "__curPos",
        "x: x |> (y: y)",
    ];
    // Failures: unbound variables, duplicates.
    let failing = [
        "x: q",
        "{ a = 1; a = 2; }",
        "{ a.b = 1; a.b = 2; }",
        "{ a = { x = 1; y = 2; }; a = { y = 3; x = 4; }; }",
        "{ x, x }: x",
    ];
    for seed in [SEEDS, &[][..], &SEEDS[5..]] {
        for text in snippets {
            assert!(same(text, seed), "{text:?} does not parse");
        }
        for text in failing {
            assert!(!same(text, seed), "{text:?} parses");
        }
    }
}

/// Random programs from a small grammar (sets merged along attribute paths, scopes of
/// every kind, selections, strings): the two ways agree on each.
#[test]
fn generated_programs_attach_to_the_same_tree() {
    let mut g = Gen(0x2545f4914f6cdd1d);
    let mut parsed = 0;
    for _ in 0..3000 {
        let mut text = String::new();
        g.expr(&mut text, 4, &["a"]);
        let text = format!("a: {text}");
        let seed: Vec<&str> = SEEDS
            .iter()
            .copied()
            .filter(|_| g.next().is_multiple_of(2))
            .collect();
        if same(&text, &seed) {
            parsed += 1;
        }
    }
    assert!(
        parsed > 1000,
        "only {parsed} of 3000 generated programs parsed"
    );
}

struct Gen(u64);

const NAMES: &[&str] = &["a", "b", "c", "d", "e", "f", "x", "y", "z", "self", "lib"];

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
    fn name(&mut self) -> &'static str {
        self.pick(NAMES)
    }
    /// An expression with the variables `scope` bound (mostly; sometimes an unbound one).
    fn expr(&mut self, out: &mut String, depth: u32, scope: &[&'static str]) {
        let var = |g: &mut Gen| -> &'static str {
            if g.next().is_multiple_of(20) {
                g.name()
            } else {
                g.pick(scope)
            }
        };
        if depth == 0 {
            match self.next() % 4 {
                0 => out.push_str(&(self.next() % 100).to_string()),
                1 => out.push_str(&format!("\"s{}\"", self.next() % 10)),
                _ => out.push_str(var(self)),
            }
            return;
        }
        match self.next() % 12 {
            0 => {
                // A set, maybe recursive, with paths that merge.
                let rec = self.next().is_multiple_of(3);
                out.push_str(if rec { "rec { " } else { "{ " });
                let mut inner: Vec<&'static str> = scope.to_vec();
                let n = self.next() % 5;
                let mut names = Vec::new();
                for _ in 0..n {
                    names.push(self.name());
                }
                if rec {
                    inner.extend(names.iter().copied());
                }
                for (k, nm) in names.iter().enumerate() {
                    match self.next() % 4 {
                        0 => {
                            out.push_str(&format!("{nm}.{} = ", self.name()));
                            self.expr(out, depth - 1, &inner);
                            out.push_str("; ");
                        }
                        1 => out.push_str(&format!("inherit ({}) {nm}; ", var(self))),
                        2 => {
                            out.push_str(&format!("{nm} = {{ {} = ", self.name()));
                            self.expr(out, depth - 1, &inner);
                            out.push_str(&format!("; inherit ({}) s{k}; }}; ", var(self)));
                        }
                        _ => {
                            out.push_str(&format!("{nm} = "));
                            self.expr(out, depth - 1, &inner);
                            out.push_str("; ");
                        }
                    }
                }
                out.push('}');
            }
            1 => {
                let n = self.name();
                let m = self.name();
                let mut inner = scope.to_vec();
                inner.push(n);
                inner.push(m);
                out.push_str(&format!("let {n} = "));
                self.expr(out, depth - 1, &inner);
                out.push_str(&format!("; {m} = "));
                self.expr(out, depth - 1, &inner);
                out.push_str("; in ");
                self.expr(out, depth - 1, &inner);
            }
            2 => {
                let n = self.name();
                let mut inner = scope.to_vec();
                inner.push(n);
                out.push_str(&format!("({n}: "));
                self.expr(out, depth - 1, &inner);
                out.push(')');
            }
            3 => {
                let (p, q, r) = (self.name(), self.name(), self.name());
                let mut inner = scope.to_vec();
                inner.extend([p, q, r]);
                out.push_str(&format!("({r}@{{ {p}, {q} ? "));
                self.expr(out, depth - 1, &inner);
                out.push_str(", ... }: ");
                self.expr(out, depth - 1, &inner);
                out.push(')');
            }
            4 => {
                out.push('(');
                self.expr(out, depth - 1, scope);
                out.push_str(&format!(").{}.{} or ", self.name(), self.name()));
                self.expr(out, depth - 1, scope);
            }
            5 => {
                out.push_str("with ");
                self.expr(out, depth - 1, scope);
                out.push_str("; ");
                let n = self.name();
                let mut inner = scope.to_vec();
                inner.push(n);
                self.expr(out, depth - 1, &inner);
            }
            6 => {
                out.push_str("if ");
                self.expr(out, depth - 1, scope);
                out.push_str(" then ");
                self.expr(out, depth - 1, scope);
                out.push_str(" else ");
                self.expr(out, depth - 1, scope);
            }
            7 => {
                out.push_str("[ ");
                for _ in 0..self.next() % 3 {
                    out.push('(');
                    self.expr(out, depth - 1, scope);
                    out.push_str(") ");
                }
                out.push(']');
            }
            8 => {
                out.push_str("\"x${");
                self.expr(out, depth - 1, scope);
                out.push_str("}y\"");
            }
            9 => {
                out.push('(');
                self.expr(out, depth - 1, scope);
                out.push_str(self.pick(&[") - (", ") < (", ") // (", ") ++ (", ") == ("]));
                self.expr(out, depth - 1, scope);
                out.push(')');
            }
            10 => {
                out.push('(');
                self.expr(out, depth - 1, scope);
                out.push_str(&format!(") ? {}.{}", self.name(), self.name()));
            }
            _ => {
                out.push('(');
                self.expr(out, depth - 1, scope);
                out.push_str(") (");
                self.expr(out, depth - 1, scope);
                out.push(')');
            }
        }
    }
}
