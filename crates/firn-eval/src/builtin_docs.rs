//! Short descriptions of the built-in functions, for the repl's `:doc`: the names of the
//! arguments and what the function does. Written for firn (the Nix manual has the full
//! reference); a test checks that every built-in function has one, with as many arguments as
//! it takes.

/// The documentation of one built-in function.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinDoc {
    pub name: &'static str,
    pub args: &'static [&'static str],
    pub text: &'static str,
}

/// The documentation of built-in function `name` (as in `builtins.<name>`), if it is one.
pub fn lookup(name: &str) -> Option<&'static BuiltinDoc> {
    DOCS.iter().find(|d| d.name == name)
}

macro_rules! docs {
    ($($name:literal [$($arg:literal),*] $text:literal;)*) => {
        &[$(BuiltinDoc { name: $name, args: &[$($arg),*], text: $text }),*]
    };
}

/// Every built-in function, by name.
pub static DOCS: &[BuiltinDoc] = docs! {
    "abort" ["s"] "Stop evaluation at once with the message s. Unlike `throw`, `tryEval` cannot catch it.";
    "add" ["a", "b"] "The sum of the numbers a and b (`a + b`); a float if either is one.";
    "addDrvOutputDependencies" ["s"] "The string s, whose context must be a single derivation path (`drv.drvPath`), with that element turned into a dependency on all the derivation's outputs.";
    "addErrorContext" ["message", "v"] "v, unchanged; should evaluating it fail, message is added to the error's trace.";
    "all" ["pred", "list"] "Whether pred returns true for every element of list (true for an empty list).";
    "any" ["pred", "list"] "Whether pred returns true for at least one element of list.";
    "appendContext" ["s", "context"] "The string s with the string context described by the set context (as `getContext` gives it) added.";
    "attrNames" ["set"] "The names of the attributes of set, as a list of strings sorted alphabetically.";
    "attrValues" ["set"] "The values of the attributes of set, in the order of their names.";
    "baseNameOf" ["x"] "The last component of the path or string x: everything after the final `/` (a trailing `/` is ignored).";
    "bitAnd" ["a", "b"] "The bitwise AND of the integers a and b.";
    "bitOr" ["a", "b"] "The bitwise OR of the integers a and b.";
    "bitXor" ["a", "b"] "The bitwise XOR of the integers a and b.";
    "break" ["v"] "v; in a debugger session, a breakpoint. firn has no debugger, so it gives v.";
    "catAttrs" ["name", "list"] "The values of the attribute name in those sets of list that have it, in order.";
    "ceil" ["x"] "The smallest integer that is not less than the number x.";
    "compareVersions" ["a", "b"] "Compare the version strings a and b as `nix-env` does: -1 if a is older, 0 if they are equal, 1 if a is newer.";
    "concatLists" ["lists"] "The lists in the list lists joined into one.";
    "concatMap" ["f", "list"] "`concatLists (map f list)`: f applied to each element of list, each giving a list, joined.";
    "concatStringsSep" ["separator", "list"] "The strings of list joined with separator between each two; string contexts are kept.";
    "convertHash" ["args"] "A hash in another encoding. args is a set of `hash` (the hash), `toHashFormat` (`base16`, `nix32`, `base32`, `base64` or `sri`) and, unless the hash names it, `hashAlgo`.";
    "deepSeq" ["a", "b"] "b, after evaluating a completely: every list element and attribute value, recursively.";
    "derivation" ["attrs"] "A derivation from the set attrs, which must have `name`, `system` and `builder`. The result is a set with `drvPath`, `outPath`, one attribute per output and the given attributes; the derivation is instantiated when one of the paths is evaluated.";
    "derivationStrict" ["attrs"] "Instantiate the derivation described by attrs at once and give a set of its `drvPath` and one path per output. `derivation` is built on it.";
    "dirOf" ["s"] "The directory part of the path or string s: everything before the last `/`.";
    "div" ["a", "b"] "a divided by b (`a / b`); integer division when both are integers.";
    "elem" ["x", "list"] "Whether x is equal to some element of list.";
    "elemAt" ["list", "n"] "The element of list at index n, counting from 0; an error if there is none.";
    "exec" ["args"] "Run the program named by the first string of the list args with the others as its arguments, and evaluate what it prints as a Nix expression. Only with `allow-unsafe-native-code-during-evaluation`; the paths the strings refer to are built first.";
    "fetchClosure" ["args"] "Copy the closure of store path `fromPath` from the binary cache at `fromStore` (http or https) into the local store and give the path, with itself as context, readable in pure evaluation too. The path must be content-addressed; with `toPath` the closure is rewritten to content-addressed form first and must become `toPath` (set it to \"\" to be told the path); with `inputAddressed = true` an input-addressed path is taken as it is, if signed by a trusted key. Needs the `fetch-closure` experimental feature.";
    "fetchGit" ["args"] "Fetch a Git repository (a URL, or a set of `url`, `ref`, `rev`, `shallow`, `submodules`, `allRefs`, ...) into the store; the result has `outPath`, `rev`, `shortRev`, `revCount` and `lastModified`.";
    "fetchMercurial" ["args"] "Fetch a Mercurial repository (a URL or path, or a set of `url`, `rev` (a revision, or a branch or tag name) and `name`) into the store with `hg`; the result has `outPath`, `branch`, `rev`, `shortRev` and `revCount`.";
    "fetchTarball" ["args"] "Download a tarball (a URL, or a set of `url`, `sha256` and `name`) and unpack it into the store; gives its path. Without a hash it is cached for `tarball-ttl` seconds.";
    "getFlake" ["ref"] "Fetch the flake a flake reference names, lock its inputs (in memory, from its `flake.lock` where that still fits) and give its outputs with `outPath`, `inputs`, `outputs`, `sourceInfo` and the source's `narHash`, `rev`, `lastModified`... (experimental feature `flakes`; a pure evaluation takes only locked references).";
    "fetchTree" ["input"] "Fetch a source tree described by a flake reference (string or set: `path`, `tarball`, `file`, `git`, ...) into the store; gives a set with `outPath` and what the input type knows (`narHash`, `rev`, `lastModified`, ...).";
    "fetchurl" ["url"] "Download url (a string, or a set of `url` and `sha256`/`hash`) into the store at evaluation time; gives its path.";
    "filter" ["pred", "list"] "The elements of list for which pred returns true, in order.";
    "filterSource" ["pred", "path"] "Copy path into the store, keeping only the files and directories for which `pred path type` returns true (type is `regular`, `directory`, `symlink` or `unknown`).";
    "findFile" ["search-path", "lookup"] "Find lookup (as in `<lookup>`) in search-path, a list of sets of `prefix` and `path` as `builtins.nixPath` gives; `<...>` is sugar for this.";
    "flakeRefToString" ["attrs"] "The URL form of the flake reference given as the set attrs (the inverse of `parseFlakeRef`).";
    "floor" ["x"] "The largest integer that is not greater than the number x.";
    "foldl'" ["op", "nul", "list"] "Reduce list from the left: `op (... (op (op nul x0) x1) ...) xn`, evaluating each intermediate value at once (so long lists take no stack).";
    "fromJSON" ["s"] "The Nix value of the JSON text s: objects become sets, arrays lists, numbers integers or floats.";
    "fromTOML" ["s"] "The Nix value of the TOML text s: tables become sets.";
    "functionArgs" ["f"] "For a function taking a set pattern `{ a, b ? 1, ... }`, a set of its named arguments, each true if it has a default; an empty set for other functions.";
    "genList" ["generator", "length"] "A list of length elements, element i being `generator i`.";
    "genericClosure" ["attrs"] "The closure of attrs.startSet (a list of sets, each with a `key`) under attrs.operator, a function from such a set to a list of more; each key appears once, in the order found.";
    "getAttr" ["name", "set"] "The attribute name of set (`set.${name}`); an error if it has none.";
    "getContext" ["s"] "The string context of s as a set: for each store path, whether it is a plain `path`, `allOutputs` of a derivation, or some `outputs`.";
    "getEnv" ["name"] "The value of environment variable name of the evaluating process, or \"\" if it is not set. Not allowed in pure evaluation.";
    "groupBy" ["f", "list"] "A set that groups the elements of list by the string `f element` gives: each name maps to the list of elements that gave it, in order.";
    "hasAttr" ["name", "set"] "Whether set has an attribute name (`set ? ${name}`).";
    "hasContext" ["s"] "Whether the string s has a string context.";
    "hashFile" ["type", "path"] "The base-16 hash of the file at path with the algorithm type: `md5`, `sha1`, `sha256` or `sha512`.";
    "hashString" ["type", "s"] "The base-16 hash of the string s with the algorithm type: `md5`, `sha1`, `sha256` or `sha512`.";
    "head" ["list"] "The first element of list; an error if it is empty.";
    "import" ["path"] "Evaluate the Nix file at path (a directory's `default.nix`) and give its value. Each file is evaluated once per evaluation.";
    "intersectAttrs" ["e1", "e2"] "The attributes of e2 whose names e1 also has.";
    "isAttrs" ["e"] "Whether e evaluates to a set.";
    "isBool" ["e"] "Whether e evaluates to a Boolean.";
    "isFloat" ["e"] "Whether e evaluates to a float.";
    "isFunction" ["e"] "Whether e evaluates to a function.";
    "isInt" ["e"] "Whether e evaluates to an integer.";
    "isList" ["e"] "Whether e evaluates to a list.";
    "isNull" ["e"] "Whether e evaluates to null (same as `e == null`).";
    "isPath" ["e"] "Whether e evaluates to a path.";
    "isString" ["e"] "Whether e evaluates to a string.";
    "length" ["list"] "The number of elements of list.";
    "lessThan" ["a", "b"] "Whether a is less than b (`a < b`), for numbers, strings, paths and lists.";
    "listToAttrs" ["list"] "A set from list, a list of sets of `name` and `value`; of equal names, the first wins.";
    "map" ["f", "list"] "A list of `f x` for each element x of list, computed lazily.";
    "mapAttrs" ["f", "set"] "set with each value v of attribute name replaced by `f name v`.";
    "match" ["regex", "s"] "If the POSIX extended regular expression regex matches all of s, a list of what its groups matched (null for a group that did not take part); otherwise null.";
    "mul" ["a", "b"] "The product of the numbers a and b (`a * b`).";
    "outputOf" ["derivation-reference", "output-name"] "The path of output output-name of the derivation derivation-reference names: a string whose context is one derivation path (`builtins.unsafeDiscardOutputDependency drv.drvPath`) or one output that is itself a derivation (another `outputOf`, or the `outPath` of a derivation that makes a `.drv`). Gives the store path when it is known before building, otherwise a placeholder that building replaces; the result's context is that output. Only with the `dynamic-derivations` experimental feature.";
    "parseDrvName" ["s"] "Split the package name s into a set of `name` and `version`: the version starts at the first dash followed by a digit.";
    "parseFlakeRef" ["flake-ref"] "The set of attributes of the flake reference URL flake-ref (the inverse of `flakeRefToString`).";
    "partition" ["pred", "list"] "A set of `right`, the elements of list for which pred returns true, and `wrong`, the others; each in order.";
    "path" ["args"] "Copy a path into the store. args is a set of `path`, and optionally `name`, `filter` (as `filterSource`'s), `recursive` (false for a flat file hash) and `sha256` (the expected hash, which also lets pure evaluation read it).";
    "pathExists" ["path"] "Whether path exists.";
    "placeholder" ["output"] "The placeholder that `derivation` replaces with the path of output output of the derivation being built.";
    "readDir" ["path"] "A set of the entries of directory path, each name mapping to its type: `regular`, `directory`, `symlink` or `unknown`.";
    "readFile" ["path"] "The contents of the file at path, as a string (with the context of the store paths it names, when it is in the store).";
    "readFileType" ["path"] "The type of the file at path: `regular`, `directory`, `symlink` or `unknown`.";
    "removeAttrs" ["set", "names"] "set without the attributes named in the list names (names it lacks are ignored).";
    "replaceStrings" ["from", "to", "s"] "s with every occurrence of a string of the list from replaced by the string of to at the same index, scanning left to right, the first string of from that matches taking precedence.";
    "scopedImport" ["scope", "path"] "`import path`, with the attributes of the set scope in scope as variables of the file.";
    "seq" ["a", "b"] "b, after evaluating a to its outermost constructor (not inside lists and sets; see `deepSeq`).";
    "sort" ["comparator", "list"] "list sorted stably by comparator, a function of two elements that gives true when the first must come before the second.";
    "split" ["regex", "s"] "s split at the matches of the POSIX extended regular expression regex: a list of the pieces between them, with each match's list of groups in between.";
    "splitVersion" ["s"] "The components of the version string s, as `compareVersions` sees them.";
    "storePath" ["path"] "path, a store path (or a path inside one), as a string with that store path in its context. Not allowed in pure evaluation.";
    "stringLength" ["e"] "The length in bytes of the string e.";
    "sub" ["a", "b"] "a minus b (`a - b`).";
    "substring" ["start", "len", "s"] "The part of string s from byte start, of len bytes (fewer if s ends first).";
    "tail" ["list"] "list without its first element; an error if it is empty.";
    "throw" ["s"] "Fail with the message s. `tryEval` can catch it.";
    "toFile" ["name", "s"] "Write the string s to a file named name in the store and give its path. s may refer to other store paths, not to derivations.";
    "toJSON" ["e"] "The JSON text of the value of e: sets become objects (a derivation, its `outPath`), paths are copied to the store, functions are an error.";
    "toPath" ["s"] "Deprecated: the string s, which must be an absolute path.";
    "toString" ["e"] "The value of e as a string: strings as they are, paths copied, numbers printed, true as \"1\", false and null as \"\", lists joined by spaces, a set by its `__toString` or `outPath`.";
    "toXML" ["e"] "The value of e as an XML document, as `nix-instantiate --eval --xml` prints it.";
    "trace" ["e1", "e2"] "e2, after printing the value of e1 to standard error.";
    "traceVerbose" ["e1", "e2"] "As `trace` when the `trace-verbose` setting is on; otherwise just e2.";
    "tryEval" ["e"] "A set of `success` and `value`: e's value if evaluating it succeeds, or success false and value false if it fails with `throw` or `assert`.";
    "typeOf" ["e"] "The name of the type of e's value: `int`, `bool`, `string`, `path`, `null`, `set`, `list`, `lambda` or `float`.";
    "unsafeDiscardOutputDependency" ["s"] "The string s with each whole-derivation element of its context (from `drvPath`) made a plain path, so only the `.drv` file is a dependency.";
    "unsafeDiscardStringContext" ["s"] "The string s without its string context.";
    "unsafeGetAttrPos" ["name", "set"] "Where attribute name of set is defined, as a set of `file`, `line` and `column`, or null when that is not known.";
    "warn" ["message", "v"] "v, after printing message as an evaluation warning (an error with `abort-on-warn`).";
    "zipAttrsWith" ["f", "list"] "Merge the sets of list: each name found in them maps to `f name values`, values being the list of that attribute's values in order.";
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every function in `builtins` has documentation naming as many arguments as it takes,
    /// and every entry is a function there.
    #[test]
    fn every_builtin_function_is_documented() {
        // With every experimental feature on (and native code allowed), so the builtins
        // behind one are there too.
        let mut ev = crate::Evaluator::with_features(crate::features::Features {
            native_code: true,
            ..crate::features::Features::from_names(
                "pipe-operators ca-derivations impure-derivations fetch-closure dynamic-derivations flakes",
            )
        });
        let Some(crate::value::Value::Attrs(set)) = ev.builtins.peek() else {
            panic!("builtins is a set");
        };
        let mut functions = Vec::new();
        for (name, t) in set.iter() {
            if let Ok(crate::value::Value::PrimOp(p)) = ev.force(&t.clone()) {
                functions.push(name.to_string());
                let doc = lookup(name).unwrap_or_else(|| panic!("builtins.{name} has no doc"));
                assert_eq!(doc.args.len(), p.arity, "builtins.{name}");
            }
        }
        // `derivation` is a Nix function (a lambda), documented all the same.
        functions.push("derivation".into());
        for d in DOCS {
            assert!(
                functions.iter().any(|f| f == d.name),
                "{} is not a builtin",
                d.name
            );
            assert!(!d.text.is_empty());
        }
    }
}
