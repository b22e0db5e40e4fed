//! `nix-instantiate --eval --strict`: firn's early evaluator against CppNix 2.8 on a corpus of
//! expressions (outputs equal when both succeed; both fail on the same inputs).

mod common;

use common::*;

const CORPUS: &[&str] = &[
    // Printing of shared and cyclic values.
    "let x = [ x ]; in x",
    "let x = [ x ]; in [ x ]",
    "let l = [ 1 ]; in [ l l ]",
    "let l = [ 1 ]; in { a = l; b = l; }",
    "let a = { x = 1; }; in [ a a ]",
    "let x = { a = x; }; in x",
    // Function equality: never as values, the same element is.
    "let f = x: x; in f == f",
    "let f = x: x; in [ f ] == [ f ]",
    "let f = x: x; in { a = f; } == { a = f; }",
    "1 + 2 * 3 - 4",
    "7 / 2",
    "7.0 / 2",
    "1 + 0.5",
    "-3",
    "2 - -3",
    "9223372036854775807",
    "\"a\" + \"b\"",
    "''x''\\é€y''",
    "''x''\\€''",
    "\"x${toString 1}y\"",
    "toString [ 1 \"a\" null true false [ 2 ] ]",
    "toString 1.5",
    "[ 1 2 ] ++ [ 3 ]",
    "{ a = 1; } // { b = 2; a = 3; }",
    "{ a.b.c = 1; }.a.b.c",
    "let x = 1; y = x + 1; in y",
    "rec { a = b; b = 2; }.a",
    "let f = x: y: x - y; in f 5 3",
    "({ a, b ? 10, ... }: a + b) { a = 1; c = 3; }",
    "(args@{ a, ... }: args.c) { a = 1; c = 2; }",
    "with { x = 1; }; x",
    "let x = 2; in with { x = 1; }; x",
    "if 1 < 2 then \"yes\" else \"no\"",
    "assert 1 == 1; 2",
    "[ (1 == 1.0) (\"a\" < \"b\") ([ 1 2 ] < [ 1 3 ]) (null == null) ]",
    "{ a = 1; } == { a = 1; }",
    "[ 1 2 ] == [ 1 2 ]",
    "(x: x) == (x: x)",
    "{ a = 1; } ? a",
    "{ a = { b = 1; }; } ? a.b",
    "{ } ? a.b",
    "let e = { value = throw \"boom\"; }; in e ? value",
    "{ a.b = throw \"x\"; } ? a.b",
    "builtins.toXML { a = [ 1 \"s<&>\\\"\\n\" null true 2.5 ]; f = { x, y ? 1, ... }@args: x; g = x: x; }",
    "builtins.toXML (derivation { name = \"x\"; system = \"s\"; builder = \"b\"; })",
    // Tabs and carriage returns are not escaped (newlines are).
    "builtins.toXML { s = \"a\\tb\\rc\\nd\"; }",
    "builtins.fromTOML ''\n a = 1\n b = \"two\"\n [t]\n c = [ 1.5, true ]\n [[arr]]\n x = 1\n [[arr]]\n x = 2\n''",
    "builtins.fromTOML \"a = \"",
    "builtins.addErrorContext \"ctx\" (1 + 1)",
    "builtins.toPath \"/a//b/../c\"",
    "builtins.hashFile \"sha256\" /etc/hostname == builtins.hashString \"sha256\" (builtins.readFile /etc/hostname)",
    "builtins.scopedImport { x = 5; } (builtins.toFile \"s.nix\" \"x + 1\")",
    "{ a = throw \"x\"; } ? a.b",
    "{ a = 1; }.b or 5",
    "1.a or 7",
    "builtins.length [ 1 2 3 ]",
    "builtins.head [ 1 2 ]",
    "builtins.tail [ 1 2 3 ]",
    "builtins.elemAt [ 1 2 3 ] 1",
    // `builtins.NAME args` is called as a variable's builtin is: only the global's
    // members, given all their arguments; a bound `builtins` is the program's.
    "let builtins = { elemAt = l: i: 7; }; in builtins.elemAt [ 1 ] 5",
    "(builtins: builtins.elemAt [ 1 ] 5) { elemAt = l: i: 8; }",
    "with { builtins = { elemAt = l: i: 9; }; }; builtins.elemAt [ 1 2 ] 1",
    "map (builtins.elemAt [ 1 2 3 ]) [ 0 2 ]",
    "builtins.elemAt [ 1 ] 5",
    "builtins.add 1 2 3",
    "builtins.length [ 1 2 ] + builtins.stringLength \"abc\"",
    "builtins.elem 2 [ 1 2 ]",
    "map (x: x * x) [ 1 2 3 ]",
    "builtins.filter (x: x > 1) [ 1 2 3 ]",
    "builtins.foldl' (a: b: a + b) 0 [ 1 2 3 ]",
    "builtins.concatLists [ [ 1 ] [ 2 3 ] ]",
    "builtins.genList (x: x * 2) 4",
    "builtins.attrNames { b = 1; a = 2; }",
    "builtins.attrValues { b = 1; a = 2; }",
    "builtins.hasAttr \"a\" { a = 1; }",
    "builtins.getAttr \"a\" { a = 1; }",
    "builtins.removeAttrs { a = 1; b = 2; } [ \"a\" ]",
    "builtins.listToAttrs [ { name = \"x\"; value = 1; } { name = \"x\"; value = 2; } ]",
    "builtins.intersectAttrs { a = 1; } { a = 2; b = 3; }",
    "builtins.mapAttrs (n: v: n + v) { a = \"1\"; }",
    "builtins.typeOf 1",
    "builtins.typeOf 1.0",
    "builtins.typeOf \"\"",
    "builtins.typeOf { }",
    "builtins.typeOf [ ]",
    "builtins.typeOf null",
    "builtins.typeOf (x: x)",
    "builtins.typeOf ./.",
    "builtins.isString \"a\"",
    "builtins.stringLength \"hello\"",
    "builtins.substring 1 3 \"hello\"",
    "builtins.substring 3 100 \"hello\"",
    "builtins.concatStringsSep \", \" [ \"a\" \"b\" ]",
    "builtins.replaceStrings [ \"a\" \"b\" ] [ \"x\" \"yy\" ] \"abcab\"",
    "builtins.tryEval (throw \"x\")",
    "builtins.tryEval 1",
    "builtins.tryEval (assert false; 1)",
    "builtins.seq 1 2",
    "builtins.sort (a: b: a < b) [ 3 1 2 ]",
    "builtins.any (x: x > 2) [ 1 3 ]",
    "builtins.all (x: x > 2) [ 1 3 ]",
    "builtins.partition (x: x > 1) [ 1 2 3 ]",
    "builtins.catAttrs \"a\" [ { a = 1; } { b = 2; } { a = 3; } ]",
    "builtins.functionArgs ({ a, b ? 1 }: a)",
    "builtins.parseDrvName \"hello-2.12.1\"",
    "builtins.bitAnd 12 10",
    "builtins.bitOr 12 10",
    "builtins.bitXor 12 10",
    "builtins.ceil 1.5",
    "builtins.floor 1.5",
    "builtins.baseNameOf \"/a/b\"",
    "builtins.dirOf \"/a/b\"",
    "./a/../b",
    "{ \"a b\" = 1; \"if\" = 2; x-y = 3; }",
    "[ 1.5 100.0 1e10 0.1 ]",
    "\"\\n\\t\\\\ \\${x}\"",
    "builtins.zipAttrsWith (n: v: v) [ { a = 1; } { a = 2; b = 3; } ]",
    "builtins.groupBy (x: if x > 1 then \"big\" else \"small\") [ 1 2 3 ]",
    "let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 20",
    "builtins.match \"([a-z]+)-([0-9.]+)\" \"hello-2.12\"",
    "builtins.match \"a\" \"ab\"",
    "builtins.match \"(a)|b\" \"b\"",
    "builtins.match \".*x\" \"a\\nx\"",
    "builtins.split \"(a)|b\" \"xaybz\"",
    "builtins.split \",\" \"a,b,,c\"",
    "builtins.match \"[[:alpha:]]+([[:digit:]]*)\" \"abc123\"",
    "builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 100000)",
    // Operators are calls of `__sub`, `__mul`, `__div`, `__lessThan`, which a program may
    // rebind (firn evaluates the global ones directly).
    "let __sub = a: b: [ a b ]; in 5 - 3",
    "let __lessThan = a: b: \"lt\"; in [ (1 < 2) (1 > 2) (1 <= 2) (1 >= 2) ]",
    "let __mul = a: b: a + b; __div = a: b: a; in [ (3 * 4) (8 / 2) ]",
    "{ __sub = a: b: 0; }.__sub 1 2",
    "with { __sub = a: b: 0; }; 5 - 3",
    "[ (1 < 2) (2 < 1) (1 <= 1) (2 >= 3) (1.5 > 1) (\"a\" < \"b\") ([ 1 2 ] < [ 1 3 ]) (- 4) (6 / 4) (6.0 / 4) (2 * 3.5) ]",
    "let x = 3; in x - 1 - (x * 2) / 2",
    // Failures.
    "1 - \"a\"",
    "\"a\" * 2",
    "1 < \"a\"",
    "{ } > 1",
    "1 / (1 - 1)",
    "throw \"boom\"",
    "abort \"no\"",
    "assert false; 1",
    "1 + \"a\"",
    "{ }.a",
    "undefined",
    "let x = x; in x",
    "builtins.head [ ]",
    "(x: x) 1 2",
    "({ a }: a) { }",
    "({ a }: a) { a = 1; b = 2; }",
    "1 / 0",
    "\"${1}\"",
    "[ 1 ] < 2",
    // Calls of one argument that is not a plain lambda, outside a tail position (made
    // without the tail loop: `eval_call_other`, `call_lambda_at`, `call_value_at`).
    "let lib = { f = { a, b ? 2 }: a + b; }; in [ (lib.f { a = 1; }) ]",
    "with { f = { a }: a * 2; }; [ (f { a = 4; }) ]",
    "let o = { __functor = self: x: x + self.k; k = 1; }; in [ (o 2) ]",
    "let p = builtins.add 1; in [ (p 2) ((builtins.sub 5) 3) ]",
    "let lib = { add = a: b: a + b; }; in [ ((lib.add 1) 2) ]",
    "[ (({ a, ... }@args: args.c) { a = 1; c = 3; }) ]",
    "let lib = { f = { a }: a; }; in [ (lib.f { }) ]",
    "let o = { __functor = 1; }; in [ (o 1) ]",
    "let lib = { }; in [ (lib.f 1) ]",
    "with { f = { a }: a; }; [ (f { a = 1; b = 2; }) ]",
    // `x // { ... }` made without the literal's own set once its name order is known
    // (`update_with_literal`: the third call on): the same result, the literal's
    // positions.
    "let s = { a = 1; b = 2; }; f = x: s // { b = x; c = 3; }; in [ (f 1) (f 2) (f 3) (f 4) ]",
    "let s = { a = 1; }; f = x: (builtins.unsafeGetAttrPos \"c\" (s // { b = x; c = 3; })).column; in [ (f 1) (f 2) (f 3) ]",
    "let y = 5; f = x: x // { inherit y; z = y; }; in [ (f { a = 1; }) (f { y = 1; }) (f { z = 0; }) ]",
    "let f = x: { a = 0; b = 0; z = 0; } // { b = x; y = x; }; in [ (f 1) (f 2) (f 3) ]",
    "let f = x: (x // { b = throw \"lazy\"; }).a; in [ (f { a = 1; }) (f { a = 2; }) (f { a = 3; }) ]",
    "let f = x: x // { b = 1; }; in [ (f { }) (f { }) (f 3) ]",
    // Positions of the attributes `removeAttrs` and `intersectAttrs` keep: the input's.
    "let s = {\n a = 1;\n b = 2; }; p = n: x: let q = builtins.unsafeGetAttrPos n x; in [ q.line q.column ]; in [ (p \"a\" (builtins.removeAttrs s [ \"b\" ])) (p \"b\" (builtins.intersectAttrs { b = 0; } s)) (builtins.unsafeGetAttrPos \"b\" (builtins.removeAttrs s [ \"b\" ])) ]",
    // Nix's own files, found when the search path has no `nix`.
    "<nix/fetchurl.nix>",
    "<nix/no-such-file.nix>",
    "with import <nix/fetchurl.nix> { url = \"http://example.org/a/b-1.0.tar.gz\"; sha256 = \"1b5zvfl9bz6fn4jpq1ym4ckxnqfxyspqpmb2pgwg4mvn2xzgq0hd\"; }; [ drvPath outPath name urls ]",
    "with import <nix/fetchurl.nix> { url = \"http://x/y\"; md5 = \"d41d8cd98f00b204e9800998ecf8427e\"; unpack = true; name = \"z\"; }; [ drvPath outPath outputHashMode ]",
    "with import <nix/fetchurl.nix> { url = \"http://x/y\"; hash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; executable = true; }; [ drvPath outputHashAlgo ]",    // Builtins and language corners, one by one (their `--json` output too).
    r#"builtins.attrValues { b = 2; a = 1; c = 3; }"#,
    r#"builtins.catAttrs "a" [ { a = 1; } { b = 2; } { a = 3; } ]"#,
    r#"builtins.concatMap (x: [ x (x * 2) ]) [ 1 2 3 ]"#,
    r#"builtins.filter (x: x > 2) [ 1 2 3 4 5 ]"#,
    r#"builtins.genList (x: x * x) 6"#,
    r#"builtins.groupBy (x: if x > 2 then "big" else "small") [ 1 2 3 4 ]"#,
    r#"builtins.partition (x: x > 2) [ 1 2 3 4 ]"#,
    r#"builtins.zipAttrsWith (n: vs: vs) [ { a = 1; } { a = 2; b = 3; } ]"#,
    r#"builtins.mapAttrs (n: v: "${n}=${toString v}") { x = 1; y = 2; }"#,
    r#"builtins.listToAttrs [ { name = "a"; value = 1; } { name = "a"; value = 2; } ]"#,
    r#"builtins.intersectAttrs { a = 0; c = 0; } { a = 1; b = 2; c = 3; }"#,
    r#"builtins.removeAttrs { a = 1; b = 2; c = 3; } [ "a" "z" ]"#,
    r#"builtins.hasAttr "a" { a = null; }"#,
    r#"builtins.getAttr "b" { a = 1; b = 2; }"#,
    r#"builtins.elemAt [ 10 20 30 ] 1"#,
    r#"builtins.elem 2 [ 1 2 3 ]"#,
    r#"builtins.all (x: x > 0) [ 1 2 3 ]"#,
    r#"builtins.any (x: x > 2) [ 1 2 3 ]"#,
    r#"builtins.length [ 1 2 3 4 ]"#,
    r#"builtins.head [ "a" "b" ]"#,
    r#"builtins.tail [ 1 2 3 ]"#,
    r#"builtins.foldl' (a: b: a ++ [ b ]) [ ] [ 1 2 3 ]"#,
    r#"builtins.sort (a: b: a > b) [ 3 1 2 5 4 ]"#,
    r#"builtins.sort (a: b: a.k < b.k) [ { k = 2; v = "a"; } { k = 1; v = "b"; } { k = 2; v = "c"; } { k = 1; v = "d"; } ]"#,
    r#"builtins.compareVersions "1.2.3" "1.2.10""#,
    r#"builtins.compareVersions "2.0pre1" "2.0""#,
    r#"builtins.compareVersions "1.0a" "1.0""#,
    r#"builtins.splitVersion "1.2.3pre4-alpha""#,
    r#"builtins.parseDrvName "hello-world-2.10.1-rc2""#,
    r#"builtins.parseDrvName "nix-unstable""#,
    r#"builtins.match "([a-z]+)-([0-9]+)" "abc-123""#,
    r#"builtins.match "a(b)?c" "ac""#,
    r#"builtins.match "[[:digit:]]+" "0123""#,
    r#"builtins.split "(,)" "a,b,,c""#,
    r#"builtins.split "[[:space:]]+" "  hello   world ""#,
    r#"builtins.split "(a)|(b)" "xaybz""#,
    r#"builtins.replaceStrings [ "" ] [ "-" ] "abc""#,
    r#"builtins.replaceStrings [ "a" "ab" ] [ "1" "2" ] "abab""#,
    r#"builtins.replaceStrings [ "oo" ] [ "" ] "foo boo""#,
    r#"builtins.substring 2 3 "abcdefg""#,
    r#"builtins.substring 5 10 "abc""#,
    r#"builtins.stringLength "héllo""#,
    r#"builtins.hashString "md5" "hello""#,
    r#"builtins.hashString "sha1" "hello""#,
    r#"builtins.hashString "sha512" """#,
    r#"builtins.toJSON { a = [ 1 2.5 "s" null true ]; b = { c = "\n\t\"\\"; }; }"#,
    r#"builtins.fromJSON "{\"a\": [1, 2.5e3, -0.5, \"x\\u00e9\"], \"b\": null, \"c\": true}""#,
    r#"builtins.fromJSON "123456789012""#,
    r#"builtins.toJSON 0.1"#,
    r#"builtins.toJSON 1.0e21"#,
    r#"builtins.fromTOML "a = 1\nb = \"x\"\n[t]\nc = [1, 2]\nd = { e = true }\n""#,
    r#"builtins.fromTOML "x = 1.5\ny = 'lit'\nz = \"\"\"\nmulti\"\"\"\n""#,
    r#"builtins.toXML { a = 1; b = [ "x" null ]; }"#,
    r#"builtins.typeOf 1.5"#,
    r#"builtins.typeOf (x: x)"#,
    r#"builtins.typeOf ./."#,
    r#"builtins.typeOf null"#,
    r#"builtins.isFloat 1.0"#,
    r#"builtins.isPath /tmp"#,
    r#"toString [ 1 "a" null true false [ 2 ] ]"#,
    r#"toString 1.5"#,
    r#"toString 100000000.0"#,
    r#"toString 0.000001"#,
    r#"builtins.toString { outPath = "/x"; }"#,
    r#"builtins.toString { __toString = self: "str${toString self.v}"; v = 3; }"#,
    r#""${toString 3.14159}""#,
    r#"1.0 / 3"#,
    r#"7 / 2"#,
    r#"-7 / 2"#,
    r#"builtins.div (-7) 2"#,
    r#"builtins.mul 1.5 2"#,
    r#"builtins.sub 10 3.5"#,
    r#"builtins.add 9223372036854775806 1"#,
    r#"builtins.bitAnd 12 10"#,
    r#"builtins.bitOr 12 10"#,
    r#"builtins.bitXor 12 10"#,
    r#"builtins.ceil 1.2"#,
    r#"builtins.floor (-1.2)"#,
    r#"builtins.lessThan "a" "b""#,
    r#"[ (1 < 2) ("a" < "b") ([ 1 2 ] < [ 1 3 ]) (1.5 < 2) ]"#,
    r#"[ (1 == 1.0) ({ a = 1; } == { a = 1; }) ([ 1 ] == [ 1.0 ]) ((x: x) == (x: x)) ]"#,
    r#"let f = x: x; s = { inherit f; }; in s == s"#,
    r#"let a = { outPath = "x"; type = "derivation"; b = 1; }; c = { outPath = "x"; type = "derivation"; b = 2; }; in a == c"#,
    r#"builtins.functionArgs ({ a, b ? 1, ... }: a)"#,
    r#"builtins.functionArgs (x: x)"#,
    r#"(builtins.tryEval (throw "no")).success"#,
    r#"builtins.tryEval (assert false; 1)"#,
    r#"builtins.tryEval (builtins.abort "x" or 1)"#,
    r#"builtins.seq 1 2"#,
    r#"builtins.deepSeq [ 1 { a = 2; } ] "ok""#,
    r#"builtins.genericClosure { startSet = [ { key = 1; } ]; operator = x: if x.key < 5 then [ { key = x.key + 1; } { key = x.key * 2; } ] else [ ]; }"#,
    r#"builtins.getContext "${builtins.toFile "f" "x"}""#,
    r#"builtins.hasContext "plain""#,
    r#"builtins.unsafeDiscardStringContext "${builtins.toFile "f" "y"}""#,
    r#"builtins.attrNames (builtins.getContext "${derivation { name = "d"; system = "x"; builder = "/b"; }}")"#,
    r#"builtins.getContext (builtins.unsafeDiscardOutputDependency (derivation { name = "d"; system = "x"; builder = "/b"; }).drvPath)"#,
    r#"builtins.toFile "name" "contents with ${builtins.toFile "dep" "d"}""#,
    r#"builtins.path { path = ./.; name = "here"; filter = p: t: false; }"#,
    r#"builtins.filterSource (p: t: false) ./."#,
    r#"builtins.pathExists ./nope"#,
    r#"builtins.baseNameOf "/a/b/c.txt""#,
    r#"builtins.dirOf "/a/b/c.txt""#,
    r#"builtins.dirOf "a""#,
    r#"baseNameOf ./foo"#,
    r#"/a/b + "/c""#,
    r#"./. + "x""#,
    r#""a" + "b""#,
    r#"let x = 1; in rec { a = x; b = a + 1; x = 5; }"#,
    r#"let inherit ({ a = 1; b = 2; }) a b; in a + b"#,
    r#"{ a.b.c = 1; a.b.d = 2; a.e = 3; }"#,
    r#"{ "a b" = 1; ${"c" + "d"} = 2; }"#,
    r#"with { a = 1; }; with { a = 2; }; a"#,
    r#"let a = 1; in with { a = 2; }; a"#,
    r#"({ a ? b, b ? 2 }: a) { }"#,
    r#"(args@{ a, ... }: args) { a = 1; b = 2; }"#,
    r#"let f = { a ? 1 }@x: x; in f { }"#,
    r#"assert true; "ok""#,
    r#"if 1 < 2 then "y" else "n""#,
    r#"[ (true -> false) (false -> true) (!true || true && false) ]"#,
    r#"{ a = 1; } ? a"#,
    r#"{ a.b = 1; } ? a.b"#,
    r#"({ a = { }; }.a.b or "default")"#,
    r#"[ 1 2 ] ++ [ 3 ] ++ [ ]"#,
    r#"''
  line one
    indented ''${not interpolated}
  '''quoted
  tab\there
''"#,
    r#""\u{1}" == "u{1}""#,
    r#""escapes: \n \t \r \\ \" \$ $""#,
    r#"''a''\nb''"#,
    r#"builtins.langVersion"#,
    r#"builtins.storeDir"#,
    r#"builtins.currentSystem"#,
    r#"builtins.nixVersion >= "2""#,
    r#"builtins.concatStringsSep ", " [ "a" "b" "c" ]"#,
    r#"builtins.concatLists [ [ 1 ] [ ] [ 2 3 ] ]"#,
    r#"builtins.placeholder "out""#,
    r#"builtins.placeholder "dev""#,
    r#"(derivation { name = "p"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "dev" ]; }).dev.outPath"#,
    r#"(derivation { name = "ia"; system = "x86_64-linux"; builder = "/bin/sh"; __ignoreNulls = true; x = null; }).drvPath"#,
    r#"(derivation { name = "sa"; system = "x86_64-linux"; builder = "/bin/sh"; __structuredAttrs = true; a = [ 1 { b = "c"; } ]; }).drvPath"#,
    r#"(derivation { name = "pf"; system = "x86_64-linux"; builder = "/bin/sh"; passAsFile = [ "big" ]; big = "content"; }).drvPath"#,
    r#"(derivation { name = "fo"; system = "x86_64-linux"; builder = "/bin/sh"; outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; outputHashMode = "flat"; }).outPath"#,
    r#"(derivation { name = "fo2"; system = "x86_64-linux"; builder = "/bin/sh"; outputHash = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"; outputHashAlgo = "sha256"; outputHashMode = "recursive"; }).outPath"#,
    r#"builtins.appendContext "x" { "${builtins.toFile "a" "b"}" = { path = true; }; }"#,
    r#"builtins.addErrorContext "ctx" 5"#,
    r#"builtins.getEnv "NIX_NONEXISTENT_VAR_XYZ""#,
    r#"builtins.trace "tracing" 42"#,
    r#"builtins.mapAttrs (n: v: v) (builtins.listToAttrs (builtins.genList (i: { name = "k${toString (9 - i)}"; value = i; }) 10))"#,
    r#"builtins.attrNames { "10" = 1; "9" = 2; "a" = 3; "B" = 4; "_" = 5; }"#,
    r#"let l = builtins.genList (x: x) 10; in builtins.elemAt l (builtins.length l - 1)"#,
    r#"builtins.fromJSON (builtins.toJSON { a = 1.5; b = -3; c = "é"; })"#,
    r#"builtins.isString (toString ./.)"#,
    r#"builtins.isAttrs (builtins.getFlake or { })"#,
];

/// The corpus's expressions whose `--json` output differs from CppNix 2.8's on purpose: a
/// float that is a whole number is `3.0` in current Nix's JSON (2.8: `3`), and other floats
/// have all their digits (2.8: six).
const JSON_AS_CURRENT_NIX: &[&str] = &[
    r#"builtins.fromJSON "{\"a\": [1, 2.5e3, -0.5, \"x\\u00e9\"], \"b\": null, \"c\": true}""#,
    r#"1.0 / 3"#,
    r#"builtins.mul 1.5 2"#,
    "[ (1 < 2) (2 < 1) (1 <= 1) (2 >= 3) (1.5 > 1) (\"a\" < \"b\") ([ 1 2 ] < [ 1 3 ]) (- 4) (6 / 4) (6.0 / 4) (2 * 3.5) ]",
];

#[test]
fn evaluation_agrees_with_cppnix() {
    let mut mismatches = Vec::new();
    let json_runs = CORPUS
        .iter()
        .filter(|e| !JSON_AS_CURRENT_NIX.contains(e))
        .map(|e| (e, true));
    for (expr, json) in CORPUS.iter().map(|e| (e, false)).chain(json_runs) {
        // `--json` output ends with a newline in current Nix (not in 2.8).
        let args: &[&str] = match json {
            true => &["--eval", "--strict", "--json", "-E"],
            false => &["--eval", "--strict", "-E"],
        };
        let ours = firn("nix-instantiate")
            .args(args)
            .arg(expr)
            .output()
            .unwrap();
        let theirs = cppnix("nix-instantiate")
            .args(args)
            .arg(expr)
            .output()
            .unwrap();
        // (CppNix 2.8 streams JSON: a failure leaves what was printed before it.)
        let same_output = match json {
            true if !theirs.status.success() => true,
            true => ours.stdout.trim_ascii_end() == theirs.stdout.trim_ascii_end(),
            false => ours.stdout == theirs.stdout,
        };
        if ours.status.success() != theirs.status.success() || !same_output {
            mismatches.push(format!(
                "{expr:?} (json: {json})\n  firn:   {} {}{}\n  CppNix: {} {}{}",
                ours.status,
                String::from_utf8_lossy(&ours.stdout).trim(),
                String::from_utf8_lossy(&ours.stderr)
                    .lines()
                    .next()
                    .unwrap_or(""),
                theirs.status,
                String::from_utf8_lossy(&theirs.stdout).trim(),
                String::from_utf8_lossy(&theirs.stderr)
                    .lines()
                    .next()
                    .unwrap_or(""),
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// CppNix 2.8 wraps around on integer overflow; the current manual makes it an error, and so
/// does firn.
#[test]
fn integer_overflow_is_an_error() {
    for (expr, msg) in [
        (
            "9223372036854775807 + 1",
            "integer overflow in adding 9223372036854775807 + 1",
        ),
        (
            "(-9223372036854775807) - 2",
            "integer overflow in subtracting",
        ),
    ] {
        let out = firn("nix-instantiate")
            .args(["--eval", "-E", expr])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{expr}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(msg), "{expr}");
    }
}

#[test]
fn nix_eval_json_raw_and_apply_agree_with_cppnix() {
    let cases: &[&[&str]] = &[
        &[
            "--json",
            "--expr",
            "{ a = [ 1 \"x\" null true 1.5 ]; b.c = \"\\n\\u0001\"; }",
        ],
        &["--raw", "--expr", "\"plain\\ntext\""],
        &["--expr", "{ a.b = 5; }", "a.b", "--apply", "x: x * 2"],
        &[
            "--json",
            "--expr",
            "builtins.fromJSON ''{\"x\": [1, 2.5, \"s\", {\"y\": null}]}''",
        ],
        &["--expr", "builtins.toJSON { b = 1; a = [ true ]; }"],
    ];
    for args in cases {
        let ours = firn("nix").arg("eval").args(*args).output().unwrap();
        let theirs = cppnix("nix").arg("eval").args(*args).output().unwrap();
        assert!(
            ours.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        // CppNix 2.8 ends `--json` output without a newline; newer Nix (and firn) add one.
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout).trim_end_matches('\n'),
            String::from_utf8_lossy(&theirs.stdout).trim_end_matches('\n'),
            "{args:?}"
        );
    }
}

#[test]
fn nix_instantiate_attr_paths_and_auto_args_agree_with_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("auto.nix");
    std::fs::write(
        &f,
        "{ a ? 1, b, ... }: { sum = a + b; s = \"x\"; inner = { c = a; g = { x }: x; }; }",
    )
    .unwrap();
    let f = f.to_string_lossy().into_owned();
    let cases: &[&[&str]] = &[
        &["--eval", "--strict", "--arg", "b", "2"],
        &["--eval", "--arg", "b", "2", "-A", "sum"],
        &[
            "--eval", "--strict", "--json", "--arg", "b", "2", "--argstr", "a", "q", "-A", "s",
        ],
        &["--eval", "--arg", "b", "2", "-A", "inner.c", "-A", "sum"],
        &[
            "--eval", "--arg", "b", "2", "--arg", "x", "7", "-A", "inner.g",
        ],
    ];
    for args in cases {
        let ours = firn("nix-instantiate")
            .args(*args)
            .arg(&f)
            .output()
            .unwrap();
        let theirs = cppnix("nix-instantiate")
            .args(*args)
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            ours.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout).trim_end(),
            String::from_utf8_lossy(&theirs.stdout).trim_end(),
            "{args:?}"
        );
    }
    let out = firn("nix-instantiate")
        .args(["--eval", "-A", "nope"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Positions: `__curPos` and `builtins.unsafeGetAttrPos` (plain, nested, formals, imported
/// files; null for unknown names) give what CppNix 2.8 gives. For `inherit`, CppNix 2.8 gives
/// the position before the names; firn gives each name's own, as current Nix does (its
/// upstream test `eval-okay-inherit-attr-pos` passes).
#[test]
fn positions_agree_with_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib = tmp.path().join("lib.nix");
    std::fs::write(
        &lib,
        "{\n  alpha = 1;\n    beta.gamma = 2;\n  inherit (builtins) map;\n  fn = { x, y ? 1 }: x;\n}\n",
    )
    .expect("write");
    let main = tmp.path().join("main.nix");
    std::fs::write(
        &main,
        format!(
            r#"let
  l = import {lib};
  here = __curPos;
  p = n: builtins.unsafeGetAttrPos n l;
in [
  here
  (p "alpha") (p "beta") (p "nope")
  (builtins.unsafeGetAttrPos "y" (builtins.functionArgs l.fn))
  (builtins.unsafeGetAttrPos "a" {{ a = 1; }})
]
"#,
            lib = lib.display()
        ),
    )
    .expect("write");
    let run = |mut c: std::process::Command| ok_str(c.args(["--eval", "--strict"]).arg(&main));
    assert_eq!(run(firn("nix-instantiate")), run(cppnix("nix-instantiate")));
    let inherited = ok_str(firn("nix-instantiate").args([
        "--eval",
        "--strict",
        "-E",
        &format!(
            "(builtins.unsafeGetAttrPos \"map\" (import {})).column",
            lib.display()
        ),
    ]));
    assert_eq!(inherited.trim(), "22");
    // `//` whose right side lost to `removeAttrs` (or `intersectAttrs`) an attribute the
    // left side has: that attribute is the left side's, and the right side's syntax must
    // not give it the removed definition's position (each is looked up on its own side).
    let firn_eval = |e: &str| ok_str(firn("nix-instantiate").args(["--eval", "--strict", "-E", e]));
    let lost = firn_eval(
        "let p = n: x: (builtins.unsafeGetAttrPos n x).column; in [ (p \"a\" ({ a = 0; } // builtins.removeAttrs { a = 1; b = 2; } [ \"a\" ])) (p \"b\" ({ b = 0; } // builtins.intersectAttrs { a = 0; } { a = 1; b = 2; })) (p \"b\" ({ c = 0; } // builtins.removeAttrs { a = 1; b = 2; } [ \"a\" ])) ]",
    );
    assert_eq!(lost.trim(), "[ 70 141 260 ]");
    // A name made dynamically on the right, which the left side's syntax (before a
    // `removeAttrs`) also defines: the dynamic attribute's position (as CppNix's), never
    // the left side's removed definition.
    let dynamic = firn_eval(
        "(builtins.unsafeGetAttrPos \"p\" (builtins.removeAttrs { p = 1; q = 2; } [ \"p\" ] // { ${builtins.head [ \"p\" ]} = 3; })).column",
    );
    assert_eq!(dynamic.trim(), "85");

    // Names made dynamically and by `listToAttrs` (each at its pair's `value`, the first of
    // equal names winning), alone and under or over an update, large sets folded onto
    // from the left, the right or both (a cut chain keeps every position), and large sets
    // updated with a side that lost (to `removeAttrs`) a name the other has (the other side
    // large or not, once or in a fold): as CppNix gives them.
    let made = tmp.path().join("made.nix");
    std::fs::write(
        &made,
        r#"let
  n = "b";
  pair = name: value: { value = value; name = name; };
  d = { a = 1; ${n} = 2; ${null} = 3; };
  l = builtins.listToAttrs [ { name = "x"; value = 1; } (pair "y" 2) { value = 3; name = "x"; } ];
  g = builtins.listToAttrs (map (n: { name = n; value = 0; }) [ "q" "p" "q" ]);
  u = { x = 0; w = 1; } // l;
  o = l // { w = 2; };
  f = builtins.foldl' (acc: i: acc // { ${"k" + toString i} = i; }) { start = 0; } (builtins.genList (i: i) 5);
  r = builtins.removeAttrs d [ "a" ];
  deep = builtins.foldl' (acc: i: acc // { ${"k" + toString i} = i; } // (if i == 20 then { start = 1; } else { })) { start = 0; } (builtins.genList (i: i) 40);
  deeper = builtins.foldl' (acc: i: { ${"r" + toString i} = i; } // acc) { start = 0; } (builtins.genList (i: i) 40);
  big = BIG;
  onto = base: builtins.foldl' (acc: i: acc // { ${"k" + toString i} = i; }) base (builtins.genList (i: i) 40);
  grown = builtins.foldl' (acc: i: acc // { ${"g" + toString i} = i; } // (if i == 200 then { start = 1; } else { })) { start = 0; } (builtins.genList (i: i) 400);
  listed = builtins.listToAttrs (builtins.genList (i: { name = "l" + toString i; value = i; }) 300);
  under = base: builtins.foldl' (acc: i: { ${"r" + toString i} = i; } // acc) base (builtins.genList (i: i) 40);
  other = listed // { a5 = 0; a6 = 1; };
  mixed = base: builtins.foldl' (acc: i: if i / 3 * 3 == i then acc // { ${"m" + toString i} = i; } else { ${"n" + toString i} = i; a5 = 1; } // acc) base (builtins.genList (i: i) 60);
  p = s: map (k: builtins.unsafeGetAttrPos k s) (builtins.attrNames s);
in [ (p d) (p l) (p g) (p u) (p o) (p f) (p r) (p ({ b = 5; } // r)) (p ({ a = 1; c = 2; } // r)) (p ({ a = 1; } // builtins.removeAttrs o [ "x" ])) (p deep) (p deeper)
  (p (onto big)) (p grown) (p (onto listed)) (p (onto (big // { a7 = 0; })))
  (p (under big)) (p (under listed)) (p (mixed big)) (p (mixed listed))
  (p (big // builtins.removeAttrs { a5 = 1; zz = 2; } [ "a5" ]))
  (p ({ a5 = 0; q = 1; } // builtins.removeAttrs big [ "a5" ]))
  (p (onto (listed // builtins.removeAttrs { l7 = 1; a = 2; } [ "l7" ])))
  (p (other // builtins.removeAttrs big [ "a5" ]))
  (p (onto (other // builtins.removeAttrs big [ "a5" ]) // builtins.removeAttrs big [ "a7" ]))
  (p (builtins.foldl' (acc: i: acc // builtins.removeAttrs big [ "a${toString i}" ]) other (builtins.genList (i: i) 30))) ]
"#
        // A literal of 300 attributes, one per line.
        .replace(
            "BIG",
            &format!(
                "{{\n{}  }}",
                (0..300)
                    .map(|i| format!("    a{i} = {i};\n"))
                    .collect::<String>()
            ),
        ),
    )
    .expect("write");
    let run_made = |mut c: std::process::Command| ok_str(c.args(["--eval", "--strict"]).arg(&made));
    assert_eq!(
        run_made(firn("nix-instantiate")),
        run_made(cppnix("nix-instantiate"))
    );

    // `//` keeps both sides' positions where the right side's syntax gives exactly its
    // attributes (a literal, a set from one, a chain of such updates), as CppNix's.
    let sets = "let\n  a = { x = 1; y = 2; };\n  b = a // { y = 3; z = 4; };\n  \
                f = a // { y = 3; } // { z = 5; } // { x = 9; };\n  g = b // a;\n  \
                h = builtins.removeAttrs b [ \"z\" ] // { w = 0; };\n  \
                d = builtins.foldl' (acc: n: acc // { ${n} = n; }) { start = 0; } [ \"p\" \"q\" ];\n  \
                p = s: n: builtins.unsafeGetAttrPos n s;\nin ";
    let updates = tmp.path().join("updates.nix");
    std::fs::write(
        &updates,
        format!(
            "{sets}[ (p b \"x\") (p b \"y\") (p b \"z\") (p f \"x\") (p f \"y\") (p f \"z\")\n  \
             (p g \"x\") (p g \"z\") (p h \"x\") (p h \"y\") (p h \"w\") (p d \"start\") ]\n"
        ),
    )
    .expect("write");
    let run = |mut c: std::process::Command| ok_str(c.args(["--eval", "--strict"]).arg(&updates));
    assert_eq!(run(firn("nix-instantiate")), run(cppnix("nix-instantiate")));
    // And in `--xml`'s attribute positions.
    let shown = tmp.path().join("shown.nix");
    std::fs::write(&shown, format!("{sets}{{ b = b; f = f; g = g; h = h; }}\n")).expect("write");
    let run =
        |mut c: std::process::Command| ok_str(c.args(["--eval", "--strict", "--xml"]).arg(&shown));
    let mine = run(firn("nix-instantiate"));
    assert!(mine.contains("line=\"2\""), "{mine}");
    assert_eq!(mine, run(cppnix("nix-instantiate")));
    // Folds of updates from either side keep their origins small (and looking one up
    // shallow): a set made by 100,000 of them.
    for fold in ["{ a = n; } // acc", "acc // { a = n; }"] {
        let e = format!(
            "(builtins.unsafeGetAttrPos \"a\" (builtins.foldl' (acc: n: {fold}) {{ b = 1; }} \
             (builtins.genList (x: x) 100000))).column"
        );
        let eval = |mut c: std::process::Command| ok_str(c.args(["--eval", "-E", &e]));
        assert_eq!(
            eval(firn("nix-instantiate")),
            eval(cppnix("nix-instantiate"))
        );
    }
}

/// `nix-instantiate --eval --xml`: strict and lazy (a value not computed yet is
/// `<unevaluated />`), with and without `--no-location`, equal to CppNix 2.8's output for a
/// file of sets, lists, functions (formals, `@`, `...`), derivations (shown once, then
/// `<repeated />`), paths and escapes; an error leaves the document written so far, closed,
/// on stdout, and exits 1, as CppNix. Attribute positions are compared on sets whose
/// attributes come from their own syntax (firn keeps the positions of the left side of `//`
/// only where the right side's syntax names exactly its attributes, and does not follow
/// CppNix 2.8's column for `inherit`: see `positions_agree_with_cppnix`).
#[test]
fn xml_output_agrees_with_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = tmp.path().join("x.nix");
    std::fs::write(
        &f,
        r#"let
  f = { a, b ? 2, ... }@args: a;
  d = derivation { name = "d"; system = "x"; builder = "/bin/sh"; };
in {
  int = 42;
  str = "hello <&> \"q\" \t\n end";
  nested = { deep = { y = true; }; list = [ 1 "two" null 3.5 (-7) ]; };
  fun = f;
  plain = y: y;
  ellipsis = { ... }: 1;
  fa = builtins.functionArgs f;
  drvs = [ d d ];
  p = ./x.nix;
  ${"dyn"} = 5;
  lazy = 1 + 1;
  builtin = builtins.map;
  fns = { g = { x, y ? 1 }: x; h = z: z; };
}
"#,
    )
    .expect("write");
    // Each with whether values not computed yet are left so.
    let cases: &[(&[&str], bool)] = &[
        (&["--eval", "--xml", "--strict", "--no-location"], false),
        (&["--eval", "--xml", "--no-location"], true),
        (&["--eval", "--xml", "--strict", "-A", "nested"], false),
        (&["--eval", "--xml", "-A", "plain"], false),
        (&["--eval", "--xml", "--strict", "-A", "fns"], false),
        (&["--eval", "--xml", "--strict", "-A", "fa"], false),
        // The last output flag counts.
        (&["--eval", "--json", "--xml", "-A", "nested"], true),
    ];
    let run =
        |mut c: std::process::Command, args: &[&str]| c.args(args).arg(&f).output().expect("runs");
    for (args, lazy) in cases {
        let (ours, theirs) = (
            run(firn("nix-instantiate"), args),
            run(cppnix("nix-instantiate"), args),
        );
        assert!(
            ours.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let out = String::from_utf8_lossy(&ours.stdout);
        // (`builtins.map`, a primop, is `<unevaluated />` either way, as in CppNix.)
        assert!(!lazy || out.contains("<int value=\"2\" />") == args.contains(&"--strict"));
        assert_eq!(
            out.contains("<unevaluated />"),
            *lazy || !args.contains(&"-A"),
            "{args:?}: {out}"
        );
        assert!(out.starts_with("<?xml"), "{args:?}: {out}");
        assert_eq!(out, String::from_utf8_lossy(&theirs.stdout), "{args:?}");
    }
    // An error part way: the document so far, its elements closed, then exit 1.
    let bad = tmp.path().join("bad.nix");
    std::fs::write(
        &bad,
        "{ a = 1; b = { c = [ 1 (throw \"boom\") ]; }; z = 2; }",
    )
    .expect("write");
    for args in [
        &["--eval", "--xml", "--strict"][..],
        &["--eval", "--xml", "--strict", "--no-location"],
    ] {
        let go = |mut c: std::process::Command| c.args(args).arg(&bad).output().expect("runs");
        let (ours, theirs) = (go(firn("nix-instantiate")), go(cppnix("nix-instantiate")));
        assert_eq!(ours.status.code(), Some(1));
        assert_eq!(theirs.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{args:?}"
        );
        assert!(String::from_utf8_lossy(&ours.stderr).contains("boom"));
    }
}

/// `--raw` (current Nix): the value coerced to a string (a derivation's `outPath`, a path
/// copied), printed as it is, without quotes or a newline; anything else not a string is an
/// error with current Nix's frame. `--parse-only` is `--parse`, and `--dry-run` instantiates
/// without writing, as CppNix 2.8's: the same `.drv` path printed, nothing in the store.
#[test]
fn raw_output_dry_run_and_parse_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str]| firn("nix-instantiate").args(args).output().expect("runs");
    let out = run(&["--eval", "--json", "--raw", "-E", "\"a\\nb\\\"\""]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"a\nb\"");
    let drv = "derivation { name = \"x\"; system = \"x\"; builder = \"/bin/sh\"; }";
    let out = run(&["--eval", "--raw", "-E", drv]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/nix/store/wrjy0zpx12zvynnga8wrzngbbg6yq3vr-x"
    );
    let out = run(&["--eval", "--raw", "-E", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("while generating the nix-instantiate output")
            && err.contains("cannot coerce an integer to a string: 1"),
        "{err}"
    );
    let parse = |mut c: std::process::Command| ok_str(c.args(["--parse-only", "-E", "x: 1 + x.y"]));
    assert_eq!(
        parse(firn("nix-instantiate")),
        parse(cppnix("nix-instantiate"))
    );
    for (side, mut c) in [
        ("firn", firn("nix-instantiate")),
        ("cppnix", cppnix("nix-instantiate")),
    ] {
        let store = store_dir(tmp.path(), side);
        let shown = ok_str(c.args(["--store", &store, "--dry-run", "-E", drv]));
        assert_eq!(
            shown.trim(),
            "/nix/store/safnr1ywsblyl5qfbca0178m104hzxaw-x.drv",
            "{side}"
        );
        let written = std::fs::read_dir(std::path::Path::new(&store).join("nix/store"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".drv"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(written, 0, "{side} wrote the derivation");
    }
}

/// Writing XML counts each level towards `max-call-depth`, as CppNix: a set that contains
/// itself ends with that error (the document so far on stdout), not with memory exhausted.
#[test]
fn xml_of_a_cycle_ends_at_max_call_depth() {
    for args in [
        &[
            "--eval",
            "--xml",
            "--strict",
            "-E",
            "let x = { a = x; }; in x",
        ][..],
        &["--eval", "--xml", "-E", "let x = { a = x; }; in x"],
        &[
            "--eval",
            "--strict",
            "-E",
            "let x = { a = x; }; in builtins.toXML x",
        ],
    ] {
        let out = firn("nix-instantiate")
            .args(["--max-call-depth", "200"])
            .args(args)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("max-call-depth exceeded"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every call counts towards `max-call-depth`, tail calls too, as in current Nix (where each
/// call nests on the C++ stack; CppNix 2.8 overflows its stack instead): deep enough recursion
/// ends with the max-call-depth error, never a crash, and an endless tail recursion ends too
/// instead of running forever. `--max-call-depth` moves the limit.
#[test]
fn tail_calls_and_call_depth() {
    let run = |args: &[&str], e: &str| {
        let mut c = firn("nix-instantiate");
        c.args(args).args(["--eval", "-E", e]);
        // A regression would loop forever: give up after a minute.
        let mut child = c
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        let start = std::time::Instant::now();
        while child.try_wait().expect("waiting").is_none() {
            if start.elapsed() > std::time::Duration::from_secs(60) {
                let _ = child.kill();
                panic!("'{e}' did not end");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let tail = |n: u32| format!("let f = n: if n == {n} then n else f (n + 1); in f 0");
    let out = run(&[], &tail(9000));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "9000");
    for (args, e) in [
        (&[][..], tail(20000)),
        (
            &[][..],
            "let f = n: if n == 10000000 then n else 1 + f (n + 1); in f 0".into(),
        ),
        (&[][..], "(x: x x) (x: x x)".into()),
        (&["--max-call-depth", "100"][..], tail(200)),
    ] {
        let out = run(args, &e);
        assert_eq!(out.status.code(), Some(1), "{e}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("error: stack overflow; max-call-depth exceeded"),
            "{e}: {}",
            stderr(&out)
        );
    }
    let out = run(&["--max-call-depth", "30000"], &tail(20000));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--max-call-depth", "many"], "1");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("configuration setting 'max-call-depth' should be an integer"),
        "{}",
        stderr(&out)
    );
}

/// A call outside a tail position is made without the tail loop when its function is
/// computed (`eval_call`, `eval_call_other`): its errors (positions, frames, with and without
/// `--show-trace`) must be the loop's. Each call fails once as the body of a `let` (the loop)
/// and once as a list element (the direct way); the element's own frame aside, the outputs
/// are the same.
#[test]
fn calls_outside_tail_positions_fail_as_in_them() {
    let cases = [
        ("f = { a }: a.b;", "f { a = { }; }"),
        ("f = { a }: a;", "f { }"),
        ("f = { a }: a;", "f 1"),
        ("f = { a }: a;", "f { a = 1; b = 2; }"),
        ("f = { a }: a;", "f (throw \"arg\")"),
        ("f = x: x.b;", "f { }"),
        ("o = { __functor = self: x: x.y; };", "o { }"),
        ("o = { __functor = 1; };", "o { }"),
        ("p = builtins.add 1;", "p \"x\""),
        ("lib = { f = { a }: a.b; };", "lib.f { a = { }; }"),
        ("lib = { f = x: x.b; };", "lib.f { }"),
        ("lib = { g = a: b: a + b; };", "(lib.g 1) \"x\""),
        (
            "lib = { f = { a }: b: a + b; };",
            "(lib.f { a = 1; }) \"x\"",
        ),
        ("lib = { };", "lib.f 1"),
        ("x = 1;", "x 2"),
    ];
    // Without the source excerpts (the lines differ) and the list element's frame.
    let normal = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut lines: Vec<&str> = Vec::new();
        let mut skip_blank = false;
        for l in text.lines() {
            let t = l.trim_start();
            if skip_blank && t.is_empty() {
                skip_blank = false;
                continue;
            }
            skip_blank = false;
            if t.starts_with("… while evaluating list element") {
                skip_blank = true;
                continue;
            }
            if t.split_once('|')
                .is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok())
                || t.starts_with('|')
            {
                continue;
            }
            lines.push(l);
        }
        // An error with no frame left is shown on one line.
        if lines.first() == Some(&"error:")
            && lines
                .get(1)
                .is_some_and(|l| l.trim_start().starts_with("error: "))
        {
            let rest = lines[1].trim_start().to_string();
            let mut v = vec![rest];
            v.extend(lines[2..].iter().map(|l| l.to_string()));
            return v.join("\n");
        }
        lines.join("\n")
    };
    for (defs, call) in cases {
        for trace in [false, true] {
            let run = |e: String| {
                let mut c = firn("nix-instantiate");
                c.args(["--eval", "--strict"]);
                if trace {
                    c.arg("--show-trace");
                }
                c.args(["-E", &e]).output().expect("run firn")
            };
            let tail = run(format!("let {defs}\nin (\n{call}\n)"));
            let inner = run(format!("let {defs}\nin [ (\n{call}\n) ]"));
            assert_eq!(tail.status.code(), Some(1), "{call}");
            assert_eq!(inner.status.code(), Some(1), "{call}");
            assert_eq!(
                normal(&tail),
                normal(&inner),
                "{defs} {call} (trace: {trace})"
            );
        }
    }
}

/// `--show-trace` prints `addErrorContext` frames, `--option abort-on-warn true` makes
/// `builtins.warn` fail, and `-A` paths may quote names with dots — as CppNix / current Nix.
#[test]
fn traces_warnings_and_quoted_attr_paths() {
    let out = firn("nix-instantiate")
        .args(["--eval", "--show-trace", "-E"])
        .arg(r#"builtins.addErrorContext "while doing X" (abort "oops")"#)
        .output()
        .expect("run");
    let cpp = cppnix("nix-instantiate")
        .args(["--eval", "--show-trace", "-E"])
        .arg(r#"builtins.addErrorContext "while doing X" (abort "oops")"#)
        .output()
        .expect("run");
    assert!(!out.status.success());
    // The frame and the message are CppNix 2.8's; the layout and the "while calling the
    // 'abort' builtin" frame are current Nix's (frames first, outermost first; none for
    // `addErrorContext` itself).
    let ours = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        ours.trim_end(),
        "error:\n       … while doing X\n\n       … while calling the 'abort' builtin\n         \
         at «string»:1:43:\n            1| builtins.addErrorContext \"while doing X\" (abort \
         \"oops\")\n             |                                           ^\n\n       \
         error: evaluation aborted with the following error message: 'oops'"
    );
    let theirs = String::from_utf8_lossy(&cpp.stderr);
    for line in [
        "error: evaluation aborted with the following error message: 'oops'",
        "… while doing X",
    ] {
        assert!(
            theirs.contains(line) && ours.contains(line),
            "{line}: {theirs}"
        );
    }
    // Without --show-trace, the same here: current Nix shows the first few frames (and
    // those of `addErrorContext` always); CppNix 2.8 showed none.
    let out = firn("nix-instantiate")
        .args(["--eval", "-E"])
        .arg(r#"builtins.addErrorContext "while doing X" (abort "oops")"#)
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stderr), ours);

    let warn = r#"builtins.warn "careful" 1"#;
    let ok_run = firn("nix-instantiate")
        .args(["--eval", "-E", warn])
        .output()
        .expect("run");
    assert!(ok_run.status.success());
    let abort = firn("nix-instantiate")
        .args(["--eval", "--option", "abort-on-warn", "true", "-E", warn])
        .output()
        .expect("run");
    assert!(!abort.status.success());
    assert!(String::from_utf8_lossy(&abort.stderr).contains("careful"));

    let e = r#"{ "a.b" = { c = 1; }; }"#;
    let mine = ok_str(firn("nix-instantiate").args(["--eval", "-E", e, "-A", "\"a.b\".c"]));
    let theirs = ok_str(cppnix("nix-instantiate").args(["--eval", "-E", e, "-A", "\"a.b\".c"]));
    assert_eq!(mine, theirs);
}

/// The `at FILE:LINE:COL:` line of an evaluation error (`None` without one): the error's
/// own, else that of the innermost frame shown before it (current Nix shows the first few
/// frames, where 2.8 showed the innermost position under the message).
fn error_location(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let error = lines.iter().rposition(|l| l.starts_with("error:"))?;
    let is_at = |l: &&&str| l.starts_with("at ");
    let own = lines[error + 1..].iter().find(is_at);
    own.or_else(|| lines[..error].iter().rev().find(is_at))
        .map(|l| l.to_string())
}

#[test]
fn errors_point_where_cppnix_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f.nix");
    std::fs::write(&file, "let\n  a = 1;\n  b = { };\n  c = b.x;\nin\n  c\n").expect("write");
    let cases: &[&[&str]] = &[
        &["-E", "{ }.x"],
        &["-E", "let f = x: x.y; in f 1"],
        &["-E", "let a = { b = 1; }; in a.c.d"],
        &["-E", "assert 1 == 2; 3"],
        &["-E", "builtins.head []"],
        &["-E", "let g = { a }: a; in g { }"],
        &["-E", "1 + \"a\""],
        &[file.to_str().expect("utf-8 path")],
    ];
    for args in cases {
        let ours = firn("nix-instantiate")
            .args(["--eval", "--strict"])
            .args(*args)
            .output()
            .expect("run firn");
        let theirs = cppnix("nix-instantiate")
            .args(["--eval", "--strict"])
            .args(*args)
            .output()
            .expect("run CppNix");
        assert!(
            !ours.status.success() && !theirs.status.success(),
            "{args:?}"
        );
        let (o, t) = (error_location(&ours.stderr), error_location(&theirs.stderr));
        assert!(
            o.is_some(),
            "{args:?}: no location in {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        // Where firn follows current Nix's error positions (the upstream .err.exp files)
        // rather than 2.8's: `a + b` errors at the operand (both at the expression's start
        // here), a missing argument at the lambda (eval-fail-missing-arg), not the call.
        if args.last().is_some_and(|a| a.contains(" + ")) {
            continue;
        }
        if args.last().is_some_and(|a| a.starts_with("let g = { a }")) {
            assert_eq!(o.as_deref(), Some("at «string»:1:9:"), "{args:?}");
            assert_eq!(t.as_deref(), Some("at «string»:1:22:"), "{args:?}");
            continue;
        }
        assert_eq!(o, t, "{args:?}");
    }
    // `throw` has no position in CppNix 2.8, nor in firn: current Nix shows the call's in
    // the builtin's frame, before the message.
    let out = firn("nix-instantiate")
        .args(["--eval", "-E", "throw \"boom\""])
        .output()
        .expect("run firn");
    let shown = String::from_utf8_lossy(&out.stderr);
    assert!(shown.ends_with("\n       error: boom\n"), "{shown}");
    assert!(shown.contains("… while calling the 'throw' builtin\n         at «string»:1:1:"));
}

/// `foldl'` and `sort` call a two-argument lambda with both arguments at once
/// (`Evaluator::call2`): an error in its body still gets the frames of the call (the
/// builtin's, then the function's, with the position of its second lambda, as current Nix).
#[test]
fn two_argument_calls_from_builtins_keep_their_frames() {
    for (expr, builtin, error) in [
        (
            "let add = a: b: a + b; in builtins.foldl' add 0 [ 1 \"x\" ]",
            "foldl'",
            "error: cannot add a string to an integer\n       at «string»:1:21:",
        ),
        (
            "let add = a: b: a + b; in builtins.sort add [ 1 \"x\" ]",
            "sort",
            "error: cannot coerce an integer to a string: 1",
        ),
    ] {
        let out = firn("nix-instantiate")
            .args(["--eval", "--strict", "--show-trace", "-E", expr])
            .output()
            .expect("run firn");
        assert!(!out.status.success());
        let shown = String::from_utf8_lossy(&out.stderr);
        let frames: Vec<&str> = shown
            .lines()
            .filter(|l| l.contains('…') || l.trim_start().starts_with("at "))
            .collect();
        let call = format!("       … while calling the '{builtin}' builtin");
        assert_eq!(frames[0], call, "{shown}");
        assert_eq!(frames[2], "       … while calling 'add'", "{shown}");
        assert_eq!(frames[3], "         at «string»:1:14:", "{shown}");
        assert!(shown.contains(error), "{shown}");
    }
}

#[test]
fn show_trace_names_functions_and_attributes() {
    let run = |expr: &str, trace: bool| {
        let mut c = firn("nix-instantiate");
        c.args(["--eval", "--strict", "-E", expr]);
        if trace {
            c.arg("--show-trace");
        }
        let out = c.output().expect("run firn");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A function is known by the name it was bound to (all the lambdas of a curried one).
    let msg = run("let f = { a }: a; in f { }", false);
    assert!(
        msg.contains("function 'f' called without required argument 'a'"),
        "{msg}"
    );
    let expr = "let s = { x = 1 + \"a\"; }; g = y: z: s.x; in g 1 2";
    // Without --show-trace, the frames but those of function calls (as current Nix).
    let plain = run(expr, false);
    let frames: Vec<&str> = plain.lines().filter(|l| l.contains('…')).collect();
    assert_eq!(
        frames,
        [
            "       … while evaluating the attribute 'x'",
            "       … from the definition of 'x'",
        ],
        "{plain}"
    );
    let traced = run(expr, true);
    let frames: Vec<&str> = traced.lines().filter(|l| l.contains('…')).collect();
    // Outermost first, as current Nix lists them.
    assert_eq!(
        frames,
        [
            "       … from call site",
            "       … while calling 'g'",
            "       … while evaluating the attribute 'x'",
            "       … from the definition of 'x'",
        ],
        "{traced}"
    );
    // The error is at the operand of `+` that is not a number, as in current Nix.
    assert!(traced.contains("at «string»:1:19:"), "{traced}");
}

#[test]
fn a_bad_hash_algorithm_is_a_usage_error() {
    // As current Nix (2.8 words the message otherwise): its tools follow a usage error with
    // where to find help, the program named as it was invoked.
    let out = firn("nix-instantiate")
        .args(["--eval", "-E", "builtins.hashString \"foo\" \"x\""])
        .output()
        .expect("run firn");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Try '")
            && last.ends_with("nix-instantiate --help' for more information."),
        "{err}"
    );
    assert!(err.contains("error: unknown hash algorithm 'foo'"), "{err}");
}

#[test]
fn relative_search_path_entries_are_relative_to_the_current_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("sp/foo")).expect("mkdir");
    let run = |mut c: std::process::Command| {
        ok_str(
            c.current_dir(dir.path())
                .args(["--eval", "-I", "sp", "-E", "<foo>"]),
        )
    };
    let ours = run(firn("nix-instantiate"));
    assert_eq!(ours, run(cppnix("nix-instantiate")));
    assert!(ours.trim_end().ends_with("/sp/foo"), "{ours}");
}

/// A reader that goes away (`nix-instantiate ... | head -c 10`) is not an error for the
/// commands that print results, as with CppNix (whose results go to `std::cout`): exit 0,
/// nothing on stderr, no panic. Each command writes far more than a pipe holds.
#[test]
fn a_closed_stdout_is_not_an_error() {
    use std::process::Stdio;
    let big = "builtins.genList (x: x) 200000";
    let doc = std::env::temp_dir().join(format!("firn-closed-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(doc.join("f"), "x").unwrap();
    let store = format!("{}-store", doc.display());
    let doc = doc.to_string_lossy().into_owned();
    let added = ok_str(firn("nix-store").args(["--store", &store, "--add", &doc]));
    let path = added.trim();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        // Text results of nix-store: queries and the paths realised.
        (
            "nix-store",
            vec!["--store", &store, "-q", "--requisites", path],
        ),
        ("nix-store", vec!["--store", &store, "-q", "--graph", path]),
        ("nix-store", vec!["--store", &store, "-r", path]),
        ("nix-instantiate", vec!["--eval", "--strict", "--expr", big]),
        (
            "nix-instantiate",
            vec!["--eval", "--strict", "--json", "--expr", big],
        ),
        ("nix", vec!["eval", "--expr", big]),
        // 2,000 lines of hashes.
        ("nix-hash", [&*doc; 2000].to_vec()),
    ];
    for (tool, args) in cases {
        for (who, mut cmd) in [("cppnix", cppnix(tool)), ("firn", firn(tool))] {
            let mut child = cmd
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Close the reading end at once.
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                // (`-r` without `--add-root` warns, in both.)
                out.status.success() && !err.contains("error"),
                "{who} {tool} {:?}: {:?}, stderr {err}",
                &args[..args.len().min(3)],
                out.status
            );
        }
    }
    let _ = std::fs::remove_dir_all(&doc);
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+w", &store])
        .status();
    let _ = std::fs::remove_dir_all(&store);
}

/// Current Nix's `lint-url-literals`, `lint-absolute-path-literals` and
/// `lint-short-path-literals` (`ignore`, `warn`, `fatal`) reach the parser from every source
/// of settings; `--impure` is accepted (the legacy commands never evaluate purely).
#[test]
fn lint_settings_from_every_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("u.nix");
    std::fs::write(&file, "http://example.com\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let fatal = format!(
        "error: URL literals are disallowed. Consider using a string literal \
         \"http://example.com\" instead (lint-url-literals)\n       at {path}:1:1:\n            \
         1| http://example.com\n             | ^\n            2|\n"
    );
    let run = |setup: &dyn Fn(&mut std::process::Command)| {
        let mut c = firn("nix-instantiate");
        c.args(["--eval", "--impure"]);
        setup(&mut c);
        c.arg(path).output().expect("run firn")
    };
    // Ignored by default.
    let out = run(&|_| {});
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\"http://example.com\"\n"
    );
    assert!(out.stderr.is_empty());
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("nix.conf"), "lint-url-literals = fatal\n").expect("write");
    let sources: [&dyn Fn(&mut std::process::Command); 4] = [
        &|c| {
            c.args(["--lint-url-literals", "fatal"]);
        },
        &|c| {
            c.args(["--option", "lint-url-literals", "fatal"]);
        },
        &|c| {
            c.env("NIX_CONFIG", "lint-url-literals = fatal");
        },
        &|c| {
            c.env("NIX_CONF_DIR", &conf);
        },
    ];
    for setup in sources {
        let out = run(setup);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr), fatal);
    }
    // `warn`: the value, and the warning with its location under `warning: `.
    let out = run(&|c| {
        c.args(["--lint-url-literals", "warn"]);
    });
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\"http://example.com\"\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "warning: URL literals are discouraged. Consider using a string literal \
             \"http://example.com\" instead (lint-url-literals)\n         at {path}:1:1:\n              \
             1| http://example.com\n               | ^\n              2|\n"
        )
    );
    // The path lints, in `nix eval` too.
    let out = firn("nix")
        .args([
            "eval",
            "--lint-absolute-path-literals",
            "fatal",
            "--expr",
            "/tmp/foo",
        ])
        .output()
        .expect("run firn");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "error: absolute path literals are not portable. Consider replacing path literal \
             '/tmp/foo' by a string, relative path, or parameter (lint-absolute-path-literals)"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A value that is no level: Nix's usage error.
    let out = run(&|c| {
        c.args(["--lint-short-path-literals", "loud"]);
    });
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "error: option 'lint-short-path-literals' has invalid value 'loud' (expected \
             'ignore', 'warn', or 'fatal')"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The message of the error a command ended with: CppNix 2.8 prints it first (its
/// `fetchTree` message with ", at (string):1:1" after it), firn under the frames of the
/// builtin that raised it, as current Nix.
fn final_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .filter(|l| l.trim_start().starts_with("error: "))
        .map(|l| {
            l.trim_start()
                .trim_end_matches(", at (string):1:1")
                .to_string()
        })
        .find(|l| l != "error:")
        .unwrap_or_default()
}

/// Pure evaluation (`nix eval --expr` without `--impure`, `pure-eval`) and restricted
/// evaluation (`restrict-eval`) allow and refuse what CppNix 2.8's do, with its messages.
#[test]
fn pure_and_restricted_evaluation_as_cppnix() {
    let e = env();
    let file = e.write("f.nix", "{ x = builtins.getEnv \"HOME\"; }\n");
    let pure: &[&str] = &[
        "builtins.getEnv \"HOME\"",
        "builtins ? currentSystem",
        "builtins ? currentTime",
        "__currentSystem",
        "builtins.nixPath",
        "builtins.pathExists /etc",
        "builtins.fetchurl \"file:///etc/hostname\"",
        "builtins.fetchTarball \"file:///etc/hostname\"",
        "builtins.storePath /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x",
        "<nixpkgs>",
        "builtins.findFile [ ] \"x\"",
        "\"${./x}\"",
        "builtins.path { path = /etc/hostname; }",
        "builtins.hashFile \"sha256\" /etc/hostname",
        "builtins.fetchGit /tmp",
        "builtins.fetchTree { type = \"path\"; path = \"/etc\"; }",
        "import /etc/hostname",
        "builtins.readDir /etc",
        "builtins.scopedImport { } /etc/hostname",
        "(import <nix/fetchurl.nix> { url = \"http://x/y\"; sha256 = \"1b5zvfl9bz6fn4jpq1ym4ckxnqfxyspqpmb2pgwg4mvn2xzgq0hd\"; }).outPath",
    ];
    let mut runs: Vec<Vec<String>> = pure
        .iter()
        .map(|x| vec!["eval".into(), "--expr".into(), x.to_string()])
        .collect();
    for args in [
        &["eval", "--impure", "--expr", "builtins.getEnv \"HOME\""][..],
        &["eval", "--impure", "--expr", "builtins ? currentSystem"],
    ] {
        runs.push(args.iter().map(|s| s.to_string()).collect());
    }
    runs.push(vec![
        "eval".into(),
        "-f".into(),
        file.display().to_string(),
        "x".into(),
    ]);
    let mut mismatches = Vec::new();
    let mut compare = |what: String, ours: std::process::Output, theirs: std::process::Output| {
        let got = (
            ours.status.success(),
            ours.stdout,
            final_error(&ours.stderr),
        );
        let want = (
            theirs.status.success(),
            theirs.stdout,
            final_error(&theirs.stderr),
        );
        if got != want {
            mismatches.push(format!("{what}\n  firn:   {got:?}\n  CppNix: {want:?}"));
        }
    };
    for (i, args) in runs.iter().enumerate() {
        let (a, b) = (e.store(&format!("f{i}")), e.store(&format!("c{i}")));
        // `fetchTree` needs the `flakes` feature in CppNix 2.8.
        let flakes = ["--extra-experimental-features", "flakes"];
        let ours = firn("nix")
            .args(args)
            .args(["--store", &a])
            .args(flakes)
            .output()
            .unwrap();
        let theirs = cppnix("nix")
            .args(args)
            .args(["--store", &b])
            .args(flakes)
            .output()
            .unwrap();
        compare(format!("nix {args:?}"), ours, theirs);
    }
    // Store paths the evaluation made: a `toFile` result is not readable (CppNix allows only
    // copied sources and fetched paths), a `builtins.path` with its hash is.
    let src = e.write("src", "from the source\n");
    let hash = ok_str(
        cppnix("nix-hash")
            .args(["--type", "sha256", "--flat", "--base32"])
            .arg(&src),
    );
    let made: &[(&str, Option<&str>)] = &[
        ("builtins.readFile (builtins.toFile \"a\" \"b\")", None),
        (
            &format!(
                "builtins.readFile (builtins.path {{ path = {}; sha256 = \"{}\"; recursive = false; }})",
                src.display(),
                hash.trim()
            ),
            Some("\"from the source\\n\"\n"),
        ),
    ];
    for (i, (expr, want)) in made.iter().enumerate() {
        for (name, mut c) in [("firn", firn("nix")), ("CppNix", cppnix("nix"))] {
            let store = e.store(&format!("made-{name}-{i}"));
            let out = c
                .args(["eval", "--store", &store, "--expr", expr])
                .output()
                .unwrap();
            match want {
                Some(w) => assert_eq!(String::from_utf8_lossy(&out.stdout), *w, "{name}: {expr}"),
                None => assert!(
                    final_error(&out.stderr).contains("is forbidden in pure eval mode"),
                    "{name}: {expr}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }
    // The settings, with the legacy commands.
    let legacy: &[(&[&str], &str)] = &[
        (
            &["--option", "pure-eval", "true"],
            "builtins.getEnv \"HOME\"",
        ),
        (
            &["--option", "restrict-eval", "true"],
            "builtins.getEnv \"HOME\"",
        ),
        (
            &["--option", "restrict-eval", "true"],
            "builtins ? currentSystem",
        ),
        (
            &["--option", "restrict-eval", "true"],
            "builtins.readFile /etc/hostname",
        ),
        (
            &["--option", "restrict-eval", "true", "-I", "/etc"],
            "builtins.readFile /etc/hostname",
        ),
        (
            &["--option", "restrict-eval", "true", "-I", "foo=/etc"],
            "builtins.readFile <foo/hostname>",
        ),
        // Fetchers take only URIs under an `allowed-uris` prefix (after a `/`) or paths that
        // may be read.
        (
            &[
                "--option",
                "restrict-eval",
                "true",
                "--option",
                "allowed-uris",
                "https://example.org/a",
            ],
            "builtins.fetchurl \"https://example.org/ab\"",
        ),
        (
            &["--option", "restrict-eval", "true"],
            "builtins.fetchTarball { url = \"http://example.com/x.tar.gz\"; }",
        ),
        (
            &[
                "--option",
                "restrict-eval",
                "true",
                "--extra-experimental-features",
                "flakes",
            ],
            "builtins.fetchTree \"git+https://example.com/r\"",
        ),
        (
            &["--option", "restrict-eval", "true"],
            "builtins.fetchGit \"https://example.com/r\"",
        ),
        (
            &["--option", "restrict-eval", "true"],
            "builtins.fetchMercurial \"https://example.com/r\"",
        ),
        (
            &["--option", "restrict-eval", "true"],
            "builtins.fetchurl \"file:///etc/hostname\"",
        ),
    ];
    for (flags, expr) in legacy {
        let run = |mut c: std::process::Command| {
            c.args(*flags)
                .args(["--eval", "-E", expr])
                .output()
                .unwrap()
        };
        compare(
            format!("nix-instantiate {flags:?} {expr}"),
            run(firn("nix-instantiate")),
            run(cppnix("nix-instantiate")),
        );
    }
    // A URI under an allowed prefix is fetched (here it cannot be downloaded).
    for (what, mut c) in [
        ("firn", firn("nix-instantiate")),
        ("CppNix", cppnix("nix-instantiate")),
    ] {
        let out = c
            .args(["--option", "restrict-eval", "true"])
            .args([
                "--option",
                "allowed-uris",
                "http://127.0.0.1:9/ https://example.org/a",
            ])
            .args([
                "--eval",
                "-E",
                "builtins.fetchurl \"https://example.org/a/b\"",
            ])
            .output()
            .unwrap();
        let err = final_error(&out.stderr);
        assert!(
            !out.status.success() && !err.contains("forbidden"),
            "{what}: {err}"
        );
    }
    for (what, mut c) in [
        ("firn", firn("nix-instantiate")),
        ("CppNix", cppnix("nix-instantiate")),
    ] {
        let out = c
            .args(["--option", "pure-eval", "true", "--eval"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            final_error(&out.stderr).contains("is forbidden in pure eval mode"),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// `nix eval` writes to the store as CppNix's does (a `drvPath` it prints can be built), and
/// the files of store paths are read where a chroot store keeps them (`readFile`, `import`).
#[test]
fn evaluation_writes_to_and_reads_from_chroot_stores() {
    let e = env();
    let drv =
        "(derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }).drvPath";
    let runs: &[(&str, &[&str], &str)] = &[
        ("nix", &["eval", "--raw", "--impure", "--expr"], drv),
        (
            "nix",
            &["eval", "--impure", "--expr"],
            "builtins.readFile (builtins.toFile \"a\" \"b\")",
        ),
        (
            "nix-instantiate",
            &["--eval", "--read-write-mode", "-E"],
            "import (builtins.toFile \"a.nix\" \"1 + 2\")",
        ),
    ];
    for (i, (tool, args, expr)) in runs.iter().enumerate() {
        let mut got = Vec::new();
        for (name, mut c) in [("firn", firn(tool)), ("CppNix", cppnix(tool))] {
            let store = e.store(&format!("{name}-{i}"));
            let out = c
                .args(["--store", &store])
                .args(*args)
                .arg(expr)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name} {args:?} {expr}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if i == 0 {
                // The derivation is in the store.
                let file = std::path::Path::new(&store).join(stdout.trim().trim_start_matches('/'));
                assert!(file.is_file(), "{name}: {} not written", file.display());
            }
            got.push(stdout.trim_end().to_string());
        }
        assert_eq!(got[0], got[1], "{tool} {args:?} {expr}: firn, then CppNix");
    }
}
