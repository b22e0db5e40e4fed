//! Flakes as the evaluator sees them: `builtins.getFlake` (the `flakes` experimental feature),
//! and the flakes of the command line (installables of `nix eval`/`nix build`, `nix flake
//! lock|update|metadata`), with CppNix 2.8's semantics.
//!
//! - A flake is fetched (its reference looked up in the registries when it is indirect and
//!   that is allowed), and its `flake.nix` read: `description`, `inputs`, `outputs` (a
//!   function; the names of its set pattern other than `self` are inputs too, looked up as
//!   flake IDs) and `nixConfig`; any other attribute is an error.
//! - Each input is a set of `url`, `flake`, `follows` (a `/`-separated path of input names
//!   from the root), `inputs` (overrides of the input's own inputs) and fetcher attributes
//!   (with a `type`); a relative `url` is relative to the flake's directory.
//! - Locking ([`lock`]): the flake's `flake.lock` is read; an input whose entry there was made
//!   from the same reference keeps its locked form (its own inputs are taken from the lock
//!   too), any other input is fetched and locked, and a flake input's inputs are then locked
//!   the same way, from its own `flake.lock` unless the top-level lock already has them.
//!   `getFlake` does this in memory and writes nothing (in pure evaluation only locked
//!   references are taken, and no registry is read); a command writes a changed lock to the
//!   flake's `flake.lock` ([`write_changed`]), with its lock options ([`LockOptions`]:
//!   `--update-input`, `--override-input`, ...).
//! - Calling ([`call`]): every node of the lock is fetched as `fetchTree` would (lazily), its
//!   `flake.nix` imported and `outputs` called with its inputs and `self`; the result is the
//!   outputs updated with the source's attributes (`outPath`, `narHash`, `rev`, ...) and
//!   `inputs`, `outputs` and `sourceInfo`. A non-flake input is its source's attributes.
//!
//! - Installables ([`installable`]): `REF#ATTRPATH`, a path or `.` naming the flake in that
//!   directory (`git+file://` inside a Git repository); the first of 2.8's attribute paths
//!   (`packages.SYSTEM.`, `legacyPackages.SYSTEM.`, as given) the outputs have.
//!
//! - A flake's `nixConfig` is read with it, and applied by the commands that apply it
//!   (`flake_config.rs`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use firn_format::StorePath;

use crate::builtins::{force, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::fetch_tree::{self, Attr, Attrs, Input};
use crate::value::*;

/// A path of input names from the root flake (`a/b` in a `follows`).
type InputPath = Vec<String>;

/// A flake reference: a fetcher input and the flake's directory in it.
#[derive(Clone, Debug, PartialEq)]
struct FlakeRef {
    input: Input,
    subdir: String,
}

impl FlakeRef {
    /// The reference a string denotes (`github:o/r`, `path:/x`, `/abs/path`, `nixpkgs`,
    /// `git+file:///x?dir=sub`, ...); `base`: the directory a relative path is relative to.
    fn parse(s: &str, base: Option<&str>) -> EResult<FlakeRef> {
        let relative = !s.contains(':') && (s.starts_with('.') || !s.starts_with('/'));
        let s = match base {
            Some(base) if relative && (s.starts_with("./") || s.starts_with("../") || s == ".") => {
                let (path, query) = s.split_once('?').map_or((s, None), |(p, q)| (p, Some(q)));
                let abs = crate::eval::canon_path(&format!("{base}/{path}"));
                match query {
                    Some(q) => format!("path:{abs}?{q}"),
                    None => format!("path:{abs}"),
                }
            }
            _ => s.to_string(),
        };
        let r = crate::flakeref::FlakeRef::parse(&s).map_err(|e| EvalError::new(e.msg))?;
        FlakeRef::from_attrs(r.to_attrs())
    }

    /// The reference of a set of fetcher attributes (`dir` is the subdirectory).
    fn from_attrs(mut attrs: Attrs) -> EResult<FlakeRef> {
        let subdir = match attrs.remove("dir") {
            Some(Attr::Str(d)) => d,
            Some(_) => return err("flake input attribute 'dir' must be a string"),
            None => String::new(),
        };
        Ok(FlakeRef {
            input: fetch_tree::input_from_attrs(attrs)?,
            subdir,
        })
    }

    /// The attributes, with a non-empty `dir`.
    fn attrs(&self) -> Attrs {
        let mut attrs = self.input.attrs.clone();
        if !self.subdir.is_empty() {
            attrs.insert("dir".into(), Attr::Str(self.subdir.clone()));
        }
        attrs
    }

    /// Whether it names one tree for good (CppNix's `isLocked`).
    fn is_locked(&self) -> bool {
        self.input.attrs.contains_key("rev") || self.input.attrs.contains_key("narHash")
    }

    /// As messages show it (CppNix's `FlakeRef::to_string`: the input's URL with `dir` among
    /// its parameters).
    fn show(&self) -> String {
        match self.input.to_url() {
            Ok(mut url) => {
                if !self.subdir.is_empty() {
                    url.query.insert("dir".into(), self.subdir.clone());
                }
                url.to_url_string()
            }
            Err(_) => fetch_tree::attrs_to_json(&self.attrs()),
        }
    }
}

/// An input of a flake, as its `flake.nix` gives it.
#[derive(Clone, Debug)]
struct FlakeInput {
    reference: Option<FlakeRef>,
    is_flake: bool,
    /// An absolute input path (from the root flake).
    follows: Option<InputPath>,
    overrides: BTreeMap<String, FlakeInput>,
}

/// A flake fetched and its `flake.nix` read.
struct Flake {
    original: FlakeRef,
    /// The reference after the registries (the original one when it is direct).
    resolved: FlakeRef,
    locked: FlakeRef,
    description: Option<String>,
    /// Its source in the store.
    path: StorePath,
    inputs: BTreeMap<String, FlakeInput>,
    /// Its `nixConfig` settings, by name, their values as text.
    config: Vec<(String, String)>,
}

/// A node of a lock: the root (no reference) or a locked input, with the edges to its own
/// inputs.
#[derive(Debug)]
struct Node {
    /// `(locked, original, is a flake)`.
    reference: Option<(FlakeRef, FlakeRef, bool)>,
    inputs: RefCell<BTreeMap<String, Edge>>,
}

#[derive(Clone, Debug)]
enum Edge {
    Node(Rc<Node>),
    Follows(InputPath),
}

impl Node {
    fn root() -> Rc<Node> {
        Rc::new(Node {
            reference: None,
            inputs: RefCell::new(BTreeMap::new()),
        })
    }
}

/// Fetched trees by reference (with the reference resolved and locked), for one locking (a
/// reference met twice is fetched once).
#[derive(Default)]
struct Fetched(Vec<(FlakeRef, StorePath, FlakeRef, FlakeRef)>);

/// How a flake is locked.
#[derive(Clone, Copy)]
struct Flags {
    use_registries: bool,
    allow_unlocked: bool,
}

/// How a command (not `getFlake`) locks: registries used, unlocked inputs taken.
const COMMAND_FLAGS: Flags = Flags {
    use_registries: true,
    allow_unlocked: true,
};

/// The command line's say in locking (CppNix's lock flags).
#[derive(Clone, Debug)]
pub struct LockOptions {
    /// `--recreate-lock-file` (and `nix flake update`): every input locked afresh.
    pub recreate: bool,
    /// Not `--no-update-lock-file`: the lock file may change.
    pub update: bool,
    /// Not `--no-write-lock-file`: a changed lock is written.
    pub write: bool,
    /// `--update-input PATH`: these inputs (`a/b`) locked afresh.
    pub update_inputs: Vec<String>,
    /// `--override-input PATH REF`: these inputs taken from other flake references.
    pub override_inputs: Vec<(String, String)>,
    /// `--commit-lock-file`: a lock file written in a Git repository is committed, its
    /// message's summary this (the `commit-lockfile-summary` setting; empty: CppNix's
    /// `flake.lock: Add` or `Update`).
    pub commit: Option<String>,
    /// `--inputs-from REF`: the inputs of that flake are registry entries for their names.
    pub inputs_from: Option<String>,
    /// `--override-flake FROM TO`: registry entries.
    pub override_flakes: Vec<(String, String)>,
    /// The flake's `nixConfig` is applied (by the commands that apply it, as CppNix's
    /// `applyNixConfig`), with `accept_config` (`accept-flake-config`) all of it.
    pub apply_config: bool,
    pub accept_config: bool,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            recreate: false,
            update: true,
            write: true,
            update_inputs: Vec::new(),
            override_inputs: Vec::new(),
            commit: None,
            inputs_from: None,
            override_flakes: Vec::new(),
            apply_config: false,
            accept_config: false,
        }
    }
}

/// An input path as the command line gives it (`a/b`).
fn input_path(s: &str) -> InputPath {
    s.split('/')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// The tree of `r`, `r` resolved (looked up in the registries if it is indirect and
/// `lookup` allows that) and locked.
fn fetch_ref(
    ev: &mut Evaluator,
    r: &FlakeRef,
    lookup: bool,
    fetched: &mut Fetched,
) -> EResult<(StorePath, FlakeRef, FlakeRef)> {
    if let Some((_, p, res, l)) = fetched.0.iter().find(|(from, ..)| from == r) {
        return Ok((p.clone(), res.clone(), l.clone()));
    }
    let input = if r.input.attrs.get("type") == Some(&Attr::Str("indirect".into())) {
        if !lookup {
            return err(format!(
                "'{}' is an indirect flake reference, but registry lookups are not allowed",
                r.show()
            ));
        }
        fetch_tree::lookup_in_registries(ev, &r.input)?
    } else {
        r.input.clone()
    };
    let (path, locked) = fetch_tree::fetch_input(ev, &input)?;
    let shown = ev.store.dir.display(&path);
    ev.allow_store_path(&shown);
    let resolved = FlakeRef {
        input,
        subdir: r.subdir.clone(),
    };
    let locked = FlakeRef {
        input: locked,
        subdir: r.subdir.clone(),
    };
    fetched
        .0
        .push((r.clone(), path.clone(), resolved.clone(), locked.clone()));
    Ok((path, resolved, locked))
}

/// The root of the lock in `flake`'s own `flake.lock` (an empty one if it has none).
fn own_lock(ev: &Evaluator, flake: &Flake) -> EResult<Rc<Node>> {
    let source = ev.store.real_path(&ev.store.dir.display(&flake.path));
    read_lock(&source.join(&flake.locked.subdir).join("flake.lock"))
}

/// Fetch the flake `r` and read its `flake.nix` (`root`: where a `follows` of its inputs
/// starts).
fn get_flake(
    ev: &mut Evaluator,
    r: &FlakeRef,
    lookup: bool,
    fetched: &mut Fetched,
    root: &[String],
) -> EResult<Flake> {
    let (path, resolved, locked) = fetch_ref(ev, r, lookup, fetched)?;
    let mut description = None;
    let shown = ev.store.dir.display(&path);
    let dir = match locked.subdir.as_str() {
        "" => shown.clone(),
        sub => crate::eval::canon_path(&format!("{shown}/{sub}")),
    };
    if !dir.starts_with(&shown) {
        return err(format!(
            "'flake.nix' file of flake '{}' escapes from '{shown}'",
            locked.show()
        ));
    }
    let file = format!("{dir}/flake.nix");
    let real = ev.store.real_path(&file);
    if !real.is_file() {
        return err(format!(
            "source tree referenced by '{}' does not contain a '{}/flake.nix' file",
            locked.show(),
            locked.subdir
        ));
    }
    let v = ev.import(&real.to_string_lossy())?;
    let Value::Attrs(top) = v else {
        return err(format!(
            "expected a set but got {} at {file}:1:1",
            v.type_name()
        ));
    };
    let mut inputs = BTreeMap::new();
    let mut config = Vec::new();
    for (name, t) in top.iter() {
        let at = |ev: &Evaluator| match ev.positions.attr_offset(&top, name, &ev.interner) {
            Some(o) => ev.positions.render(o).map(|r| r.trim_end().to_string()),
            None => None,
        };
        match &**name {
            "description" => match force(ev, t)? {
                Value::String(d) => description = Some(d.s.to_string()),
                _ => return err("flake attribute 'description' is not a string"),
            },
            "inputs" => {
                inputs = parse_inputs(ev, t, &dir, root).map_err(|mut e| {
                    e.trace.push("while reading the flake's 'inputs'".into());
                    e
                })?;
            }
            "outputs" => {}
            "nixConfig" => config = crate::flake_config::read(ev, t)?,
            other => {
                let mut e = EvalError::new(format!(
                    "flake '{}' has an unsupported attribute '{other}'",
                    locked.show()
                ));
                e.at = at(ev);
                return Err(e);
            }
        }
    }
    let Some(outputs) = top.get("outputs") else {
        return err(format!(
            "flake '{}' lacks attribute 'outputs'",
            locked.show()
        ));
    };
    match force(ev, outputs)? {
        Value::Lambda(l) => {
            if let firn_syntax::ExprKind::Lambda {
                formals: Some(f), ..
            } = &l.expr.kind
            {
                for formal in f.formals.iter() {
                    let name = ev.interner.name(formal.name).to_string();
                    if name != "self" && !inputs.contains_key(&name) {
                        let reference = FlakeRef::parse(&name, None)?;
                        inputs.insert(
                            name,
                            FlakeInput {
                                reference: Some(reference),
                                is_flake: true,
                                follows: None,
                                overrides: BTreeMap::new(),
                            },
                        );
                    }
                }
            }
        }
        Value::PrimOp(_) | Value::PrimOpApp(..) => {}
        other => {
            return err(format!(
                "flake attribute 'outputs' is {} while a function was expected",
                other.type_name()
            ))
        }
    }
    Ok(Flake {
        original: r.clone(),
        resolved,
        locked,
        description,
        path,
        inputs,
        config,
    })
}

/// The inputs of a flake (`inputs = { ... }`); `base`: the flake's directory, `root`: where
/// `follows` paths start.
fn parse_inputs(
    ev: &mut Evaluator,
    t: &Thunk,
    base: &str,
    root: &[String],
) -> EResult<BTreeMap<String, FlakeInput>> {
    let Value::Attrs(set) = force(ev, t)? else {
        return err("flake attribute 'inputs' is not a set");
    };
    let mut out = BTreeMap::new();
    for (name, t) in set.iter() {
        let input = parse_input(ev, name, t, base, root).map_err(|mut e| {
            e.trace
                .push(format!("while reading the flake input '{name}'"));
            e
        })?;
        out.insert(name.to_string(), input);
    }
    Ok(out)
}

fn parse_input(
    ev: &mut Evaluator,
    name: &str,
    t: &Thunk,
    base: &str,
    root: &[String],
) -> EResult<FlakeInput> {
    let Value::Attrs(set) = force(ev, t)? else {
        return err(format!("flake input '{name}' is not a set"));
    };
    let mut input = FlakeInput {
        reference: None,
        is_flake: true,
        follows: None,
        overrides: BTreeMap::new(),
    };
    let mut attrs = Attrs::new();
    let mut url = None;
    for (k, t) in set.iter() {
        match (&**k, force(ev, t)?) {
            ("url", Value::String(s)) => {
                url = Some(s.s.to_string());
                attrs.insert("url".into(), Attr::Str(s.s.to_string()));
            }
            ("flake", Value::Bool(b)) => input.is_flake = b,
            ("inputs", _) => input.overrides = parse_inputs(ev, t, base, root)?,
            ("follows", Value::String(s)) => {
                let mut path = root.to_vec();
                path.extend(s.s.split('/').filter(|p| !p.is_empty()).map(String::from));
                input.follows = Some(path);
            }
            ("url" | "follows", v) => {
                return err(format!(
                    "flake input attribute '{k}' is {} while a string was expected",
                    v.type_name()
                ))
            }
            ("flake", v) => {
                return err(format!(
                    "flake input attribute 'flake' is {} while a Boolean was expected",
                    v.type_name()
                ))
            }
            (_, Value::String(s)) => {
                attrs.insert(k.to_string(), Attr::Str(s.s.to_string()));
            }
            (_, Value::Bool(b)) => {
                attrs.insert(k.to_string(), Attr::Bool(b));
            }
            (_, Value::Int(i)) => {
                attrs.insert(k.to_string(), Attr::Int(i as u64));
            }
            (_, v) => {
                return err(format!(
                "flake input attribute '{k}' is {} while a string, Boolean, or integer is expected",
                v.type_name()
            ))
            }
        }
    }
    if attrs.contains_key("type") {
        input.reference = Some(FlakeRef::from_attrs(attrs)?);
    } else {
        attrs.remove("url");
        if let Some(k) = attrs.keys().next() {
            return err(format!("unexpected flake input attribute '{k}'"));
        }
        if let Some(url) = url {
            input.reference = Some(FlakeRef::parse(&url, Some(base))?);
        }
    }
    if input.follows.is_none() && input.reference.is_none() {
        input.reference = Some(FlakeRef::from_attrs(
            [
                ("type".to_string(), Attr::Str("indirect".into())),
                ("id".to_string(), Attr::Str(name.into())),
            ]
            .into(),
        )?);
    }
    Ok(input)
}

// ---------------------------------------------------------------------------------------------
// Lock files

/// The root node of the lock file at `path` (an empty root if there is none).
fn read_lock(path: &std::path::Path) -> EResult<Rc<Node>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Node::root()),
        Err(e) => return err(format!("reading lock file '{}': {e}", path.display())),
    };
    let bad = |what: &str| EvalError::new(format!("lock file '{}' {what}", path.display()));
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&format!("is not valid JSON: {e}")))?;
    let version = json["version"].as_u64().unwrap_or(0);
    if !(5..=7).contains(&version) {
        return Err(bad(&format!("has unsupported version {version}")));
    }
    let nodes = json["nodes"]
        .as_object()
        .ok_or_else(|| bad("has no 'nodes'"))?;
    let root = json["root"].as_str().ok_or_else(|| bad("has no 'root'"))?;
    let mut made: HashMap<String, Rc<Node>> = HashMap::new();
    node_of(root, nodes, &mut made, &bad, 0)
}

/// The node `key` of a lock file's `nodes` (each made once, as nodes are shared).
fn node_of(
    key: &str,
    nodes: &serde_json::Map<String, serde_json::Value>,
    made: &mut HashMap<String, Rc<Node>>,
    bad: &dyn Fn(&str) -> EvalError,
    depth: usize,
) -> EResult<Rc<Node>> {
    if let Some(n) = made.get(key) {
        return Ok(n.clone());
    }
    if depth > 1000 {
        return Err(bad("has a cycle of inputs"));
    }
    let json = nodes
        .get(key)
        .ok_or_else(|| bad(&format!("has no node '{key}'")))?;
    let reference = match json.get("locked") {
        None => None,
        Some(locked) => {
            let mut attrs =
                crate::fetch::attrs_from_value(locked).ok_or_else(|| bad("has a bad 'locked'"))?;
            // Version 5 kept the NAR hash and times apart, in `info`.
            if let Some(info) = json.get("info") {
                attrs.extend(
                    crate::fetch::attrs_from_value(info).ok_or_else(|| bad("has a bad 'info'"))?,
                );
            }
            let locked = FlakeRef::from_attrs(attrs)?;
            let original = json
                .get("original")
                .and_then(crate::fetch::attrs_from_value)
                .ok_or_else(|| bad(&format!("has no 'original' in node '{key}'")))?;
            let original = FlakeRef::from_attrs(original)?;
            if !locked.is_locked() {
                return Err(bad(&format!("contains mutable lock '{}'", locked.show())));
            }
            let is_flake = json.get("flake").and_then(|f| f.as_bool()).unwrap_or(true);
            Some((locked, original, is_flake))
        }
    };
    let node = Rc::new(Node {
        reference,
        inputs: RefCell::new(BTreeMap::new()),
    });
    made.insert(key.to_string(), node.clone());
    if let Some(inputs) = json.get("inputs") {
        let inputs = inputs
            .as_object()
            .ok_or_else(|| bad(&format!("has bad 'inputs' in node '{key}'")))?;
        for (name, edge) in inputs {
            let edge = match edge {
                serde_json::Value::String(k) => {
                    Edge::Node(node_of(k, nodes, made, bad, depth + 1)?)
                }
                serde_json::Value::Array(path) => Edge::Follows(
                    path.iter()
                        .map(|p| p.as_str().map(String::from))
                        .collect::<Option<_>>()
                        .ok_or_else(|| bad("has a bad 'follows'"))?,
                ),
                _ => return Err(bad(&format!("has a bad input '{name}'"))),
            };
            node.inputs.borrow_mut().insert(name.clone(), edge);
        }
    }
    Ok(node)
}

/// The lock file of the tree under `root` as JSON (version 7): each node under the name of
/// the input that first reaches it (`_2`, `_3`... after names taken), shared nodes once.
fn lock_json(root: &Rc<Node>) -> String {
    fn dump(
        key: &str,
        node: &Rc<Node>,
        keys: &mut HashMap<*const Node, String>,
        nodes: &mut serde_json::Map<String, serde_json::Value>,
    ) -> String {
        if let Some(k) = keys.get(&Rc::as_ptr(node)) {
            return k.clone();
        }
        let mut key = key.to_string();
        if nodes.contains_key(&key) || keys.values().any(|k| *k == key) {
            key = (2..)
                .map(|n| format!("{key}_{n}"))
                .find(|k| !nodes.contains_key(k) && !keys.values().any(|x| x == k))
                .unwrap_or_default();
        }
        keys.insert(Rc::as_ptr(node), key.clone());
        let mut n = serde_json::Map::new();
        let inputs = node.inputs.borrow();
        if !inputs.is_empty() {
            let mut out = serde_json::Map::new();
            for (name, edge) in inputs.iter() {
                let v = match edge {
                    Edge::Node(child) => serde_json::Value::from(dump(name, child, keys, nodes)),
                    Edge::Follows(path) => serde_json::Value::from(path.clone()),
                };
                out.insert(name.clone(), v);
            }
            n.insert("inputs".into(), serde_json::Value::Object(out));
        }
        if let Some((locked, original, is_flake)) = &node.reference {
            n.insert(
                "locked".into(),
                crate::flakeref::attrs_to_value(&locked.attrs()),
            );
            n.insert(
                "original".into(),
                crate::flakeref::attrs_to_value(&original.attrs()),
            );
            if !is_flake {
                n.insert("flake".into(), serde_json::Value::Bool(false));
            }
        }
        nodes.insert(key.clone(), serde_json::Value::Object(n));
        key
    }
    let mut nodes = serde_json::Map::new();
    let root_key = dump("root", root, &mut HashMap::new(), &mut nodes);
    serde_json::json!({ "nodes": nodes, "root": root_key, "version": 7 }).to_string()
}

/// Check that every `follows` of the lock under `root` leads to a node.
fn check_follows(root: &Rc<Node>) -> EResult<()> {
    let mut todo = vec![(root.clone(), Vec::<String>::new())];
    let mut seen = std::collections::HashSet::new();
    while let Some((node, at)) = todo.pop() {
        if !seen.insert(Rc::as_ptr(&node)) {
            continue;
        }
        for (name, edge) in node.inputs.borrow().iter() {
            let mut path = at.clone();
            path.push(name.clone());
            match edge {
                Edge::Node(child) => todo.push((child.clone(), path)),
                Edge::Follows(target) => {
                    if find_path(root, target, 0).is_none() {
                        return err(format!(
                            "input '{}' follows a non-existent input '{}'",
                            path.join("/"),
                            target.join("/")
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The node at input path `path` from `root` (following `follows` on the way).
fn find_path(root: &Rc<Node>, path: &[String], depth: usize) -> Option<Rc<Node>> {
    if depth > 100 {
        return None;
    }
    let mut node = root.clone();
    for name in path {
        let edge = node.inputs.borrow().get(name).cloned()?;
        node = match edge {
            Edge::Node(n) => n,
            Edge::Follows(p) => find_path(root, &p, depth + 1)?,
        };
    }
    Some(node)
}

// ---------------------------------------------------------------------------------------------
// Locking

/// A flake and the lock of its inputs.
struct Locked {
    flake: Flake,
    root: Rc<Node>,
    /// The lock differs from the flake's `flake.lock`: its source counts as dirty (no
    /// `rev`), as in CppNix.
    changed: bool,
}

struct Locker<'a> {
    ev: &'a mut Evaluator,
    flags: Flags,
    fetched: Fetched,
    overrides: HashMap<InputPath, FlakeInput>,
    /// The references of the flakes being locked, outermost first (a cycle is an error).
    parents: Vec<FlakeRef>,
    /// Inputs to lock afresh (`--update-input`).
    updates: Vec<InputPath>,
    /// The input paths met (to warn of `--update-input`/`--override-input` flags that
    /// name none).
    used: std::collections::HashSet<InputPath>,
}

/// Lock the flake `top` (in memory): its inputs as its `flake.lock` has them where they
/// are still what `flake.nix` asks for, the others fetched.
/// With `write` (a command's lock, not `getFlake`'s), a changed lock is written
/// ([`write_changed`]).
/// `recreate`: the inputs are locked afresh, as if there were no `flake.lock`.
fn lock(
    ev: &mut Evaluator,
    top: &FlakeRef,
    flags: Flags,
    options: &LockOptions,
    cwd: &str,
) -> EResult<Locked> {
    let has_entries = options.inputs_from.is_some() || !options.override_flakes.is_empty();
    if has_entries && !ev.flag_registry_added {
        // The command line's registry entries, once.
        ev.flag_registry_added = true;
        for (from, to) in &options.override_flakes {
            // (A `dir` of the target is not kept, as in the registries read from files.)
            let (from, to) = (parse_cli_ref(from, cwd)?, parse_cli_ref(to, cwd)?);
            ev.flag_registry.push((from.input, to.input));
        }
        if let Some(from) = &options.inputs_from {
            add_inputs_from(ev, from, cwd)?;
        }
    }
    let mut fetched = Fetched::default();
    let flake = get_flake(ev, top, flags.use_registries, &mut fetched, &[])?;
    if options.apply_config {
        crate::flake_config::apply(&flake.config, options.accept_config)?;
    }
    let old = own_lock(ev, &flake)?;
    let root = Node::root();
    let mut overrides = HashMap::new();
    for (path, reference) in &options.override_inputs {
        let reference = parse_cli_ref(reference, cwd)?;
        overrides.insert(
            input_path(path),
            FlakeInput {
                reference: Some(reference),
                is_flake: true,
                follows: None,
                overrides: BTreeMap::new(),
            },
        );
    }
    let mut locker = Locker {
        ev,
        flags,
        fetched,
        overrides,
        parents: Vec::new(),
        updates: options
            .update_inputs
            .iter()
            .map(|p| input_path(p))
            .collect(),
        used: std::collections::HashSet::new(),
    };
    let within = |mut e: EvalError| {
        e.trace.push(format!(
            "while updating the lock file of flake '{}'",
            flake.locked.show()
        ));
        e
    };
    locker
        .compute(
            &flake.inputs,
            &root,
            &[],
            (!options.recreate).then_some(&old),
            &[],
            false,
        )
        .map_err(within)?;
    for (path, reference) in &options.override_inputs {
        if !locker.used.contains(&input_path(path)) {
            crate::term::write_stderr_line(&format!(
                "warning: the flag '--override-input {path} {reference}' does not match any input"
            ));
        }
    }
    for path in &options.update_inputs {
        if !locker.used.contains(&input_path(path)) {
            crate::term::write_stderr_line(&format!(
                "warning: the flag '--update-input {path}' does not match any input"
            ));
        }
    }
    check_follows(&root).map_err(within)?;
    let changed = lock_json(&old) != lock_json(&root);
    let locked = Locked {
        flake,
        root,
        changed,
    };
    if !changed {
        return Ok(locked);
    }
    if options.write {
        return write_changed(ev, top, locked, &old, options);
    }
    // As current Nix's `getFlake` (2.8 refused to lock in memory), and `--no-write-lock-file`.
    crate::term::write_stderr_line(&format!(
        "warning: not writing modified lock file of flake '{}':\n{}",
        top.show(),
        diff(&old, &locked.root).trim_end()
    ));
    Ok(locked)
}

/// `--inputs-from REF`: each input of flake `reference` (locked as a command locks it,
/// nothing written), `follows` followed, made the registry entry of its name, looked up
/// before all registries (CppNix's flag registry).
fn add_inputs_from(ev: &mut Evaluator, reference: &str, cwd: &str) -> EResult<()> {
    let r = parse_cli_ref(reference, cwd)?;
    let options = LockOptions {
        write: false,
        ..LockOptions::default()
    };
    let locked = lock(ev, &r, COMMAND_FLAGS, &options, cwd)?;
    let names: Vec<String> = locked.root.inputs.borrow().keys().cloned().collect();
    for name in names {
        let Some(node) = find_path(&locked.root, std::slice::from_ref(&name), 0) else {
            continue;
        };
        if let Some((to, _, _)) = &node.reference {
            let mut attrs = crate::flakeref::Attrs::new();
            attrs.insert("type".into(), Attr::Str("indirect".into()));
            attrs.insert("id".into(), Attr::Str(name));
            let from = crate::fetch_tree::input_from_attrs(attrs)?;
            ev.flag_registry.push((from, to.input.clone()));
        }
    }
    Ok(())
}

/// Every input path of the lock under `root` with its edge (each node's inputs once).
fn all_inputs(root: &Rc<Node>) -> BTreeMap<InputPath, Edge> {
    let mut out = BTreeMap::new();
    let mut done = std::collections::HashSet::new();
    let mut todo = vec![(root.clone(), Vec::new())];
    while let Some((node, prefix)) = todo.pop() {
        if !done.insert(Rc::as_ptr(&node)) {
            continue;
        }
        for (id, edge) in node.inputs.borrow().iter() {
            let mut path: InputPath = prefix.clone();
            path.push(id.clone());
            if let Edge::Node(child) = edge {
                todo.push((child.clone(), path.clone()));
            }
            out.insert(path, edge.clone());
        }
    }
    out
}

/// An edge as the lock's diff shows it: the locked reference (with its date) or the path
/// it follows.
fn describe(edge: &Edge) -> String {
    match edge {
        Edge::Node(n) => match &n.reference {
            Some((locked, _, _)) => {
                let mut s = format!("'{}'", locked.show());
                if let Ok(Some(t)) = locked.input.int("lastModified") {
                    let d = fetch_tree::utc_date(t as i64);
                    s.push_str(&format!(" ({}-{}-{})", &d[..4], &d[4..6], &d[6..8]));
                }
                s
            }
            None => "'root'".into(),
        },
        Edge::Follows(p) => format!("follows '{}'", p.join("/")),
    }
}

/// What changed between two locks, as current Nix lists it.
fn diff(old: &Rc<Node>, new: &Rc<Node>) -> String {
    let (old, new) = (all_inputs(old), all_inputs(new));
    let mut out = String::new();
    let same = |a: &Edge, b: &Edge| match (a, b) {
        (Edge::Node(x), Edge::Node(y)) => {
            x.reference.as_ref().map(|r| &r.0) == y.reference.as_ref().map(|r| &r.0)
        }
        (Edge::Follows(x), Edge::Follows(y)) => x == y,
        _ => false,
    };
    let mut names: Vec<&InputPath> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    for path in names {
        let shown = path.join("/");
        match (old.get(path), new.get(path)) {
            (None, Some(e)) => out.push_str(&format!(
                "\u{2022} \x1b[32;1mAdded input '{shown}':\x1b[0m\n    {}\n",
                describe(e)
            )),
            (Some(_), None) => out.push_str(&format!(
                "\u{2022} \x1b[31;1mRemoved input '{shown}'\x1b[0m\n"
            )),
            (Some(a), Some(b)) if !same(a, b) => out.push_str(&format!(
                "\u{2022} \x1b[1mUpdated input '{shown}':\x1b[0m\n    {}\n  \u{2192} {}\n",
                describe(a),
                describe(b)
            )),
            _ => {}
        }
    }
    out
}

impl Locker<'_> {
    /// Lock `inputs` (those of the flake at input path `prefix`) into `node`; `old`: that
    /// flake's node in a lock file; `lock_root`: where that lock file's `follows` start;
    /// `trust`: whether `old` is known to be the flake's own.
    fn compute(
        &mut self,
        inputs: &BTreeMap<String, FlakeInput>,
        node: &Rc<Node>,
        prefix: &[String],
        old: Option<&Rc<Node>>,
        lock_root: &[String],
        trust: bool,
    ) -> EResult<()> {
        // Overrides given by this flake for its inputs' inputs.
        for (id, input) in inputs {
            for (sub, o) in &input.overrides {
                let mut path = prefix.to_vec();
                path.push(id.clone());
                path.push(sub.clone());
                self.overrides.insert(path, o.clone());
            }
        }
        for (id, given) in inputs {
            let mut path = prefix.to_vec();
            path.push(id.clone());
            self.compute_one(id, given, node, &path, old, lock_root, trust)
                .map_err(|mut e| {
                    e.trace.push(format!(
                        "while updating the flake input '{}'",
                        path.join("/")
                    ));
                    e
                })?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn compute_one(
        &mut self,
        id: &str,
        given: &FlakeInput,
        node: &Rc<Node>,
        path: &[String],
        old: Option<&Rc<Node>>,
        lock_root: &[String],
        trust: bool,
    ) -> EResult<()> {
        let overridden = self.overrides.get(path).cloned().map(|mut o| {
            // An override keeps whether the input is a flake.
            o.is_flake = given.is_flake;
            o
        });
        let has_override = overridden.is_some();
        self.used.insert(path.to_vec());
        let input = overridden.as_ref().unwrap_or(given);
        if let Some(target) = &input.follows {
            node.inputs
                .borrow_mut()
                .insert(id.to_string(), Edge::Follows(target.clone()));
            return Ok(());
        }
        let Some(reference) = &input.reference else {
            return err(format!("flake input '{id}' has no reference"));
        };
        let updating = self.updates.iter().any(|u| u == path);
        let old_lock = old
            .filter(|_| !updating)
            .and_then(|o| match o.inputs.borrow().get(id) {
                Some(Edge::Node(n)) => Some(n.clone()),
                _ => None,
            });
        let kept = old_lock.as_ref().and_then(|o| match &o.reference {
            Some(r) if r.1 == *reference && !has_override => Some((o.clone(), r.clone())),
            _ => None,
        });
        if let Some((old_lock, (locked, original, is_flake))) = kept {
            // Unchanged: keep the locked form, and lock its inputs from the old lock.
            let child = Rc::new(Node {
                reference: Some((locked.clone(), original, is_flake)),
                inputs: RefCell::new(BTreeMap::new()),
            });
            node.inputs
                .borrow_mut()
                .insert(id.to_string(), Edge::Node(child.clone()));
            let mut fake = BTreeMap::new();
            // An input of this one to update means reading this flake again.
            let mut refetch = self
                .updates
                .iter()
                .any(|u| u.len() > path.len() && u.starts_with(path));
            for (name, edge) in old_lock.inputs.borrow().iter() {
                if refetch {
                    break;
                }
                match edge {
                    Edge::Node(n) => {
                        if let Some((_, original, is_flake)) = &n.reference {
                            fake.insert(
                                name.clone(),
                                FlakeInput {
                                    reference: Some(original.clone()),
                                    is_flake: *is_flake,
                                    follows: None,
                                    overrides: BTreeMap::new(),
                                },
                            );
                        }
                    }
                    Edge::Follows(target) => {
                        if !trust {
                            // The flake may have changed: a `follows` no override gives
                            // any more means its inputs must be read again.
                            let mut at = path.to_vec();
                            at.push(name.clone());
                            if !self.overrides.contains_key(&at) {
                                refetch = true;
                                break;
                            }
                        }
                        let mut abs = lock_root.to_vec();
                        abs.extend(target.iter().cloned());
                        fake.insert(
                            name.clone(),
                            FlakeInput {
                                reference: None,
                                is_flake: true,
                                follows: Some(abs),
                                overrides: BTreeMap::new(),
                            },
                        );
                    }
                }
            }
            let inputs = if refetch {
                get_flake(self.ev, &locked, false, &mut self.fetched, path)?.inputs
            } else {
                fake
            };
            return self.compute(&inputs, &child, path, Some(&old_lock), lock_root, !refetch);
        }
        // New: fetch and lock it.
        if !self.flags.allow_unlocked && !reference.is_locked() {
            return err(format!(
                "cannot update flake input '{}' in pure mode",
                path.join("/")
            ));
        }
        let original = given.reference.clone().unwrap_or_else(|| reference.clone());
        if !input.is_flake {
            let (_, _, locked) = fetch_ref(
                self.ev,
                reference,
                self.flags.use_registries,
                &mut self.fetched,
            )?;
            node.inputs.borrow_mut().insert(
                id.to_string(),
                Edge::Node(Rc::new(Node {
                    reference: Some((locked, reference.clone(), false)),
                    inputs: RefCell::new(BTreeMap::new()),
                })),
            );
            return Ok(());
        }
        let flake = get_flake(
            self.ev,
            reference,
            self.flags.use_registries,
            &mut self.fetched,
            path,
        )?;
        let child = Rc::new(Node {
            reference: Some((flake.locked.clone(), original, true)),
            inputs: RefCell::new(BTreeMap::new()),
        });
        node.inputs
            .borrow_mut()
            .insert(id.to_string(), Edge::Node(child.clone()));
        if let Some(p) = self.parents.iter().find(|p| *p == reference) {
            return err(format!("found circular import of flake '{}'", p.show()));
        }
        self.parents.push(reference.clone());
        // Its inputs from the top-level lock if that had it, else from its own lock file.
        let result = match old_lock {
            Some(o) => self.compute(&flake.inputs, &child, path, Some(&o), lock_root, false),
            None => {
                let own = own_lock(self.ev, &flake)?;
                self.compute(&flake.inputs, &child, path, Some(&own), path, false)
            }
        };
        self.parents.pop();
        result
    }
}

// ---------------------------------------------------------------------------------------------
// Calling

/// The Nix code that makes a locked flake's value from its lock (as JSON), the root's
/// source attributes and its subdirectory.
const CALL: &str = r#"lockJSON: rootSource: rootDir:
let
  lock = builtins.fromJSON lockJSON;
  # The node an edge leads to: a node's key, or a path of input names from the root.
  target = edge: if builtins.isList edge then walk lock.root edge else edge;
  walk = key: path:
    if path == [ ] then key
    else walk (target lock.nodes.${key}.inputs.${builtins.head path}) (builtins.tail path);
  nodes = builtins.mapAttrs (key: node:
    let
      isRoot = key == lock.root;
      source =
        if isRoot then rootSource
        else builtins.fetchTree ((node.info or { }) // builtins.removeAttrs node.locked [ "dir" ]);
      dir = if isRoot then rootDir else node.locked.dir or "";
      flake = import (source + (if dir == "" then "" else "/" + dir) + "/flake.nix");
      inputs = builtins.mapAttrs (name: edge: nodes.${target edge}) (node.inputs or { });
      outputs = flake.outputs (inputs // { self = result; });
      result = outputs // source // { inherit inputs outputs; sourceInfo = source; };
    in
    if node.flake or true then
      assert builtins.isFunction flake.outputs; result
    else source) lock.nodes;
in
nodes.${lock.root}
"#;

/// The value of a locked flake.
fn call(ev: &mut Evaluator, locked: &Locked) -> EResult<Value> {
    let json = lock_json(&locked.root);
    let mut input = locked.flake.locked.input.clone();
    if locked.changed {
        input.attrs.remove("rev");
        input.attrs.remove("revCount");
    }
    let source = fetch_tree::emit_tree_attrs(ev, &locked.flake.path, &input, false)?;
    let e = ev.parse(CALL, "«string»", "/")?;
    let f = ev.eval_top(e)?;
    let f = ev.call(f, Thunk::value(Value::str(json)))?;
    let f = ev.call(f, Thunk::value(source))?;
    ev.call(
        f,
        Thunk::value(Value::str(locked.flake.locked.subdir.as_str())),
    )
}

/// `builtins.getFlake REF`: the flake's outputs and source attributes, its inputs locked as
/// its `flake.lock` has them (in memory; the others fetched, unless the evaluation is pure).
fn prim_get_flake(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    // A path names the flake in that directory (as current Nix takes it).
    let s = match force(ev, &a[0])? {
        Value::Path(p) => format!("path:{p}"),
        _ => fetch_tree::string_no_ctx(ev, &a[0])?,
    };
    let r = FlakeRef::parse(&s, None)?;
    let pure = ev.pure();
    if pure && !r.is_locked() {
        return err(format!(
            "cannot call 'getFlake' on unlocked flake reference '{s}' (use --impure to override)"
        ));
    }
    let locked = lock(
        ev,
        &r,
        Flags {
            use_registries: !pure,
            allow_unlocked: !pure,
        },
        &LockOptions {
            write: false,
            update: false,
            ..LockOptions::default()
        },
        "/",
    )?;
    call(ev, &locked)
}

// ---------------------------------------------------------------------------------------------
// Installables of the command line

/// The flake reference of an installable's part before `#`, as the command line reads it:
/// a path (absolute, or relative to `cwd`; `.` too) names the flake in that directory, as
/// `git+file://ROOT?dir=SUB` when it is in a Git repository (ROOT holding `.git`), else as
/// `path:`; anything else is parsed as a flake reference.
fn parse_cli_ref(s: &str, cwd: &str) -> EResult<FlakeRef> {
    if !(s.starts_with('/') || s.starts_with('.')) || s.contains("://") {
        return FlakeRef::parse(s, None);
    }
    let (path, query) = s.split_once('?').map_or((s, None), |(p, q)| (p, Some(q)));
    let mut dir = crate::eval::canon_path(&if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    });
    let has_flake = |d: &str| std::path::Path::new(d).join("flake.nix").exists();
    if !has_flake(&dir) {
        // A directory inside a flake names that flake: look upwards, not past a Git
        // repository's root or a file system boundary, as CppNix.
        crate::term::write_stderr_line(&format!(
            "path '{dir}' does not contain a 'flake.nix', searching up"
        ));
        let device = |d: &str| {
            std::fs::symlink_metadata(d)
                .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
                .map_err(|e| EvalError::new(format!("getting status of '{d}': {}", io_text(&e))))
        };
        let start = device(&dir)?;
        loop {
            if has_flake(&dir) {
                break;
            }
            if std::path::Path::new(&dir).join(".git").exists() {
                return err(format!(
                    "path '{dir}' is not part of a flake (neither it nor its parent directories contain a 'flake.nix' file)"
                ));
            }
            if device(&dir)? != start {
                return err(format!(
                    "unable to find a flake before encountering filesystem boundary at '{dir}'"
                ));
            }
            if dir == "/" {
                return err("could not find a flake.nix file");
            }
            dir = match dir.rsplit_once('/') {
                Some(("", _)) | None => "/".to_string(),
                Some((parent, _)) => parent.to_string(),
            };
        }
    }
    if !std::path::Path::new(&dir).is_dir() {
        return err(format!(
            "path '{dir}' is not a flake (because it's not a directory)"
        ));
    }
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let mut root = dir.clone();
    let mut sub = String::new();
    loop {
        if std::path::Path::new(&root).join(".git").exists() {
            let mut url = format!("git+file://{root}{query}");
            if !sub.is_empty() {
                if query.contains("dir=") {
                    return err(format!(
                        "flake URL '{s}' has an inconsistent 'dir' parameter"
                    ));
                }
                url.push_str(if query.is_empty() { "?" } else { "&" });
                url.push_str(&format!("dir={sub}"));
            }
            return FlakeRef::parse(&url, None);
        }
        if root == "/" {
            return FlakeRef::parse(&format!("path:{dir}{query}"), None);
        }
        let (parent, name) = root.rsplit_once('/').unwrap_or(("", &root));
        sub = match sub.is_empty() {
            true => name.to_string(),
            false => format!("{name}/{sub}"),
        };
        root = if parent.is_empty() {
            "/".into()
        } else {
            parent.to_string()
        };
    }
}

/// An IO error as CppNix words it (the system's message, without Rust's "(os error N)").
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Where `r`'s files are on this machine, if it is a local tree (`path:`, `git+file:`).
fn local_source(r: &FlakeRef) -> Option<String> {
    match (
        r.input.attrs.get("type"),
        r.input.attrs.get("path"),
        r.input.attrs.get("url"),
    ) {
        (Some(Attr::Str(t)), Some(Attr::Str(p)), _) if t == "path" => Some(p.clone()),
        (Some(Attr::Str(t)), _, Some(Attr::Str(u))) if t == "git" => {
            u.strip_prefix("file://").map(String::from)
        }
        _ => None,
    }
}

/// Whether every node of the lock under `root` is locked.
fn all_locked(root: &Rc<Node>) -> bool {
    all_inputs(root).values().all(|e| match e {
        Edge::Node(n) => n.reference.as_ref().is_none_or(|r| r.0.is_locked()),
        Edge::Follows(_) => true,
    })
}

/// Write a changed lock (the flake `top`'s, `locked`) to its `flake.lock` when the flake is
/// a local tree and every input is locked (CppNix's warnings; a Git repository gets the file
/// added to its index), then read the flake again: its source now has the new lock file.
/// A lock with an unlocked input is not written (a warning); without `update`
/// (`--no-update-lock-file`) a change is an error.
fn write_changed(
    ev: &mut Evaluator,
    top: &FlakeRef,
    mut locked: Locked,
    old: &Rc<Node>,
    options: &LockOptions,
) -> EResult<Locked> {
    let Some(local) = local_source(top) else {
        return err(format!(
            "cannot write modified lock file of flake '{}' (use '--no-write-lock-file' to ignore)",
            top.show()
        ));
    };
    if !all_locked(&locked.root) {
        crate::term::write_stderr_line(&format!(
            "warning: will not write lock file of flake '{}' because it has a mutable input",
            top.show()
        ));
        return Ok(locked);
    }
    if !options.update {
        return err(format!(
            "flake '{}' requires lock file changes but they're not allowed due to '--no-update-lock-file'",
            top.show()
        ));
    }
    let rel = match top.subdir.as_str() {
        "" => "flake.lock".to_string(),
        sub => format!("{sub}/flake.lock"),
    };
    let file = format!("{}/{rel}", local.trim_end_matches('/'));
    let existed = std::path::Path::new(&file).exists();
    let diff = diff(old, &locked.root);
    crate::term::write_stderr_line(&match (existed, diff.trim_end()) {
        (false, _) => format!("warning: creating lock file '{file}'"),
        (true, "") => format!("warning: updating lock file '{file}'"),
        (true, d) => format!("warning: updating lock file '{file}':\n{d}"),
    });
    write_lock(&file, &locked.root)?;
    let git = top.input.attrs.get("type") == Some(&Attr::Str("git".into()));
    if git {
        run_git(
            &local,
            &["add", "--force", "--intent-to-add", "--", &rel],
            &file,
        )?;
        if let Some(summary) = &options.commit {
            // CppNix's message: a summary, then the changes without their colours.
            let summary = match summary.as_str() {
                "" => format!("{rel}: {}", if existed { "Update" } else { "Add" }),
                s => s.to_string(),
            };
            let message = format!(
                "{summary}\n\nFlake lock file updates:\n\n{}",
                crate::term::strip_escapes(&diff)
            );
            run_git(&local, &["commit", &rel, "-m", &message], &file)?;
        }
    }
    let before = locked.flake.locked.input.attrs.get("rev").cloned();
    locked.flake = get_flake(ev, top, true, &mut Fetched::default(), &[])?;
    if let (true, Some(Attr::Str(rev))) = (
        options.commit.is_some() && git,
        locked.flake.locked.input.attrs.get("rev"),
    ) {
        if before.as_ref() != locked.flake.locked.input.attrs.get("rev") {
            crate::term::write_stderr_line(&format!("warning: committed new revision '{rev}'"));
        }
    }
    locked.changed = false;
    Ok(locked)
}

/// Run `git -C dir ARGS` for the lock file `file`; its error output in the error.
fn run_git(dir: &str, args: &[&str], file: &str) -> EResult<()> {
    let out = std::process::Command::new("git")
        .args(["-C", dir])
        .args(args)
        .output()
        .map_err(|e| EvalError::new(format!("running git for '{file}': {e}")))?;
    if !out.status.success() {
        return err(format!(
            "'git {}' for '{file}' failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Write the lock under `root` to `path` as CppNix does (JSON indented by two, a final
/// newline), through a temporary file renamed into place, so a crash leaves the old file.
fn write_lock(path: &str, root: &Rc<Node>) -> EResult<()> {
    let json: serde_json::Value = serde_json::from_str(&lock_json(root))
        .map_err(|e| EvalError::new(format!("making lock file '{path}': {e}")))?;
    let text = serde_json::to_string_pretty(&firn_format::json::sort_json(&json))
        .map_err(|e| EvalError::new(format!("making lock file '{path}': {e}")))?;
    let tmp = format!("{path}.tmp-{}", std::process::id());
    std::fs::write(&tmp, format!("{text}\n"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            EvalError::new(format!("writing lock file '{path}': {e}"))
        })
}

/// The value at attribute path `path` of `v`, or the close names of the attribute missing
/// on the way (a value on the way that is not a set is an error, as CppNix's).
fn lookup(ev: &mut Evaluator, mut v: Value, path: &str) -> EResult<Result<Value, Vec<String>>> {
    let parts = crate::attr_path::parse(path)?;
    for (i, part) in parts.iter().enumerate() {
        let Value::Attrs(set) = &v else {
            return err(format!(
                "'{}' is not an attribute set",
                parts[..i].join(".")
            ));
        };
        let t = match set.get(part) {
            Some(t) => t.clone(),
            None => {
                let close = firn_syntax::suggest::best_matches(part, set.keys().map(|k| &**k));
                return Ok(Err(close));
            }
        };
        v = force(ev, &t)?;
    }
    Ok(Ok(v))
}

/// The value of a flake installable (`REF#ATTRPATH`, `REF` alone meaning its default
/// package): the flake locked (its lock file written if it changed, see
/// [`write_changed`]) and called, and the first of the attribute paths CppNix 2.8 tries
/// that it has: `packages.SYSTEM.ATTRPATH`, `legacyPackages.SYSTEM.ATTRPATH`, `ATTRPATH`
/// (for `REF` alone: those of `packages.SYSTEM.default`, then `defaultPackage.SYSTEM`).
pub fn installable(
    ev: &mut Evaluator,
    installable: &str,
    cwd: &str,
    options: &LockOptions,
) -> EResult<Value> {
    installable_as(ev, installable, cwd, options, Wanted::Package)
}

/// What a command looks for in a flake installable's outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// A package (`nix build`, `nix eval`, `nix shell`).
    Package,
    /// An app or a package (`nix run`).
    App,
    /// A template (`nix flake init`, `nix flake new`).
    Template,
    /// A development shell (`nix develop`, `nix print-dev-env`): `devShells.SYSTEM.` first.
    DevShell,
}

/// [`installable`] for what a command wants: for `App` the apps first
/// (`apps.SYSTEM.ATTRPATH`, then `packages.`, `legacyPackages.`; for `REF` alone
/// `apps.SYSTEM.default`, `defaultApp`, then the default package); for `Template`,
/// `templates.ATTRPATH` then `ATTRPATH` (`defaultTemplate` for `REF` alone), as CppNix 2.8.
pub fn installable_as(
    ev: &mut Evaluator,
    installable: &str,
    cwd: &str,
    options: &LockOptions,
    want: Wanted,
) -> EResult<Value> {
    installable_at(ev, installable, cwd, options, want).map(|(v, _)| v)
}

/// [`installable_as`], with the attribute path the value was found at.
pub fn installable_at(
    ev: &mut Evaluator,
    installable: &str,
    cwd: &str,
    options: &LockOptions,
    want: Wanted,
) -> EResult<(Value, String)> {
    let (r, fragment) = match installable.split_once('#') {
        Some((r, f)) => (
            r,
            crate::flakeref::percent_decode(f).map_err(|e| EvalError::new(e.msg))?,
        ),
        None => (installable, String::new()),
    };
    let r = parse_cli_ref(r, cwd)?;
    let locked = lock(ev, &r, COMMAND_FLAGS, options, cwd)?;
    let outputs = call(ev, &locked)?;
    let system = match ev.builtins.peek() {
        Some(Value::Attrs(b)) => match b.get("currentSystem").map(|t| t.peek()) {
            Some(Some(Value::String(s))) => s.s.to_string(),
            _ => "x86_64-linux".into(),
        },
        _ => "x86_64-linux".into(),
    };
    let mut wanted = Vec::new();
    let mut prefixes = Vec::new();
    match (want, fragment.as_str()) {
        (Wanted::Template, "") => wanted.push("defaultTemplate".to_string()),
        (Wanted::Template, f) => wanted.push(f.to_string()),
        (_, f) => {
            if f.is_empty() && want == Wanted::App {
                wanted.push(format!("apps.{system}.default"));
                wanted.push(format!("defaultApp.{system}"));
            }
            if f.is_empty() && want == Wanted::DevShell {
                wanted.push(format!("devShells.{system}.default"));
                wanted.push(format!("devShell.{system}"));
            }
            match f {
                "" => wanted.extend([
                    format!("packages.{system}.default"),
                    format!("defaultPackage.{system}"),
                ]),
                f => wanted.push(f.to_string()),
            }
        }
    }
    match want {
        Wanted::Template => prefixes.push("templates.".to_string()),
        Wanted::App | Wanted::Package | Wanted::DevShell => {
            if want == Wanted::App {
                prefixes.push(format!("apps.{system}."));
            }
            if want == Wanted::DevShell {
                prefixes.push(format!("devShells.{system}."));
            }
            prefixes.push(format!("packages.{system}."));
            prefixes.push(format!("legacyPackages.{system}."));
        }
    }
    let mut tried = Vec::new();
    for prefix in prefixes {
        tried.push(format!("{prefix}{}", wanted[0]));
    }
    tried.extend(wanted);
    let mut close = Vec::new();
    for path in &tried {
        match lookup(ev, outputs.clone(), path)? {
            Ok(v) => return Ok((v, path.clone())),
            Err(names) => close.extend(names),
        }
    }
    close.sort();
    close.dedup();
    let listed: Vec<String> = tried.iter().map(|p| format!("'{p}'")).collect();
    let shown = match listed.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    let mut e = EvalError::new(format!(
        "flake '{}' does not provide attribute {shown}",
        r.show()
    ));
    e.suggestions = close;
    Err(e)
}

/// What `nix flake metadata` shows of a flake.
pub struct Metadata {
    pub original_url: String,
    pub original: serde_json::Value,
    pub resolved_url: String,
    pub resolved: serde_json::Value,
    pub locked_url: String,
    pub locked: serde_json::Value,
    pub description: Option<String>,
    /// Its source in the store.
    pub path: String,
    pub revision: Option<String>,
    pub rev_count: Option<u64>,
    pub last_modified: Option<u64>,
    /// The lock file (as JSON).
    pub locks: serde_json::Value,
    /// The inputs as a tree, a line each (`├───NAME: URL`, names in bold).
    pub tree: Vec<String>,
}

/// Lock the flake `reference` (a command line's: a path is a local flake), writing its
/// `flake.lock` if that changes (`nix flake lock`; with `recreate`, every input locked
/// afresh: `nix flake update`), and what `nix flake metadata` shows of it.
pub fn lock_command(
    ev: &mut Evaluator,
    reference: &str,
    cwd: &str,
    options: &LockOptions,
) -> EResult<Metadata> {
    if reference.contains('#') {
        return err(format!(
            "unexpected fragment '{}' in flake reference '{reference}'",
            reference.split_once('#').map_or("", |x| x.1)
        ));
    }
    let r = parse_cli_ref(reference, cwd)?;
    let locked = lock(ev, &r, COMMAND_FLAGS, options, cwd)?;
    let flake = &locked.flake;
    let input = &flake.locked.input;
    let mut tree = Vec::new();
    let mut visited = std::collections::HashSet::new();
    visited.insert(Rc::as_ptr(&locked.root));
    input_tree(&locked.root, "", &mut visited, &mut tree);
    Ok(Metadata {
        original_url: flake.original.show(),
        original: crate::flakeref::attrs_to_value(&flake.original.attrs()),
        resolved_url: flake.resolved.show(),
        resolved: crate::flakeref::attrs_to_value(&flake.resolved.attrs()),
        locked_url: flake.locked.show(),
        locked: crate::flakeref::attrs_to_value(&flake.locked.attrs()),
        description: flake.description.clone(),
        path: ev.store.dir.display(&flake.path),
        revision: input.rev()?.map(|r| r.to_base16()),
        rev_count: input.int("revCount")?,
        last_modified: input.int("lastModified")?,
        locks: firn_format::json::sort_json(
            &serde_json::from_str(&lock_json(&locked.root))
                .map_err(|e| EvalError::new(format!("making the lock file: {e}")))?,
        ),
        tree,
    })
}

/// The outputs of the flake `reference` (a command line's), locked as a command locks it,
/// and its locked reference as CppNix prints it (`nix flake show`).
pub fn outputs(
    ev: &mut Evaluator,
    reference: &str,
    cwd: &str,
    options: &LockOptions,
) -> EResult<(Value, String)> {
    let r = parse_cli_ref(reference, cwd)?;
    let locked = lock(ev, &r, COMMAND_FLAGS, options, cwd)?;
    let v = call(ev, &locked)?;
    let outputs = match &v {
        Value::Attrs(set) => match set.get("outputs") {
            Some(t) => force(ev, &t.clone())?,
            None => return err("the flake has no 'outputs'"),
        },
        _ => return err("the flake is not a set"),
    };
    Ok((outputs, locked.flake.locked.show()))
}

/// `nix flake archive`: the flake `reference` locked as a command locks it, its source and
/// each locked input's fetched (with `dry_run` only their paths computed from their NAR
/// hashes). CppNix 2.8's `--json` tree (`path`, and `inputs` by name: `follows` left out,
/// an input met twice shown twice) and the paths.
pub fn archive(
    ev: &mut Evaluator,
    reference: &str,
    cwd: &str,
    options: &LockOptions,
    dry_run: bool,
) -> EResult<(serde_json::Value, Vec<StorePath>)> {
    let r = parse_cli_ref(reference, cwd)?;
    let locked = lock(ev, &r, COMMAND_FLAGS, options, cwd)?;
    let mut paths = vec![locked.flake.path.clone()];
    let mut fetched = Fetched::default();
    let inputs = archive_inputs(ev, &locked.root, dry_run, &mut fetched, &mut paths, 0)?;
    let mut top = serde_json::Map::new();
    top.insert(
        "path".into(),
        ev.store.dir.display(&locked.flake.path).to_string().into(),
    );
    top.insert("inputs".into(), inputs);
    Ok((serde_json::Value::Object(top), paths))
}

/// The inputs of `node` for [`archive`], their paths added to `paths`.
fn archive_inputs(
    ev: &mut Evaluator,
    node: &Rc<Node>,
    dry_run: bool,
    fetched: &mut Fetched,
    paths: &mut Vec<StorePath>,
    depth: usize,
) -> EResult<serde_json::Value> {
    if depth > 100 {
        return err("the lock file's inputs are nested too deeply");
    }
    let edges: Vec<(String, Edge)> = node
        .inputs
        .borrow()
        .iter()
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    let mut out = serde_json::Map::new();
    for (name, edge) in edges {
        let Edge::Node(child) = edge else {
            continue;
        };
        let Some((locked, _, _)) = &child.reference else {
            continue;
        };
        let path = match dry_run {
            true => {
                let hash = locked.input.nar_hash()?.ok_or_else(|| {
                    EvalError::new(format!(
                        "cannot compute the store path of unlocked input '{}'",
                        locked.show()
                    ))
                })?;
                ev.store
                    .dir
                    .make_fixed_output_path(
                        &locked.input.name()?,
                        firn_format::store_path::FileIngestionMethod::Recursive,
                        &hash,
                        [],
                        false,
                    )
                    .map_err(|e| EvalError::new(format!("input '{}': {e}", locked.show())))?
            }
            false => fetch_ref(ev, locked, false, fetched)?.0,
        };
        let mut o = serde_json::Map::new();
        o.insert(
            "path".into(),
            ev.store.dir.display(&path).to_string().into(),
        );
        paths.push(path);
        let inner = archive_inputs(ev, &child, dry_run, fetched, paths, depth + 1)?;
        o.insert("inputs".into(), inner);
        out.insert(name, serde_json::Value::Object(o));
    }
    Ok(serde_json::Value::Object(out))
}

/// `nix flake clone`: the repository of the flake `reference` (registries followed) cloned
/// into `dest` with Git, as CppNix 2.8's `Input::clone`: a `git` input from its URL (a local
/// repository from its directory), a `github` one from GitHub over HTTPS, on its `ref`.
pub fn clone(ev: &mut Evaluator, reference: &str, cwd: &str, dest: &str) -> EResult<()> {
    let r = parse_cli_ref(reference, cwd)?;
    let input = match r.input.attrs.get("type") {
        Some(Attr::Str(t)) if t == "indirect" => fetch_tree::lookup_in_registries(ev, &r.input)?,
        _ => r.input.clone(),
    };
    let get = |k: &str| match input.attrs.get(k) {
        Some(Attr::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let url = match get("type").as_deref() {
        Some("git") => {
            let url = get("url").unwrap_or_default();
            let base = url.split(['?', '#']).next().unwrap_or_default().to_string();
            match base.strip_prefix("file://") {
                // Not a bare repository: its directory.
                Some(dir) if std::path::Path::new(dir).join(".git").exists() => dir.to_string(),
                _ => base,
            }
        }
        Some("github") => format!(
            "https://github.com/{}/{}.git",
            get("owner").unwrap_or_default(),
            get("repo").unwrap_or_default()
        ),
        _ => return err(format!("do not know how to clone input '{}'", input.show())),
    };
    if get("rev").is_some() {
        return err("cloning a specific revision is not implemented");
    }
    let mut c = std::process::Command::new("git");
    c.arg("clone").arg(&url);
    if let Some(r) = get("ref") {
        c.args(["--branch", &r]);
    }
    let status = c
        .arg(dest)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| EvalError::new(format!("running git to clone '{url}': {e}")))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => err(format!("program 'git' failed with exit code {code}")),
        None => err("program 'git' was killed by a signal"),
    }
}

/// `nix flake prefetch`: the flake `reference` fetched (resolved in the registries); its
/// locked reference, store path and NAR hash (SRI).
pub fn prefetch(
    ev: &mut Evaluator,
    reference: &str,
    cwd: &str,
) -> EResult<(String, String, String)> {
    let r = parse_cli_ref(reference, cwd)?;
    let (path, _, locked) = fetch_ref(ev, &r, true, &mut Fetched::default())?;
    let hash = match locked.input.nar_hash()? {
        Some(h) => h.to_sri(),
        None => return err(format!("no NAR hash for '{}'", locked.show())),
    };
    Ok((locked.show(), ev.store.dir.display(&path), hash))
}

/// The lines of `nix flake metadata`'s tree of inputs under `node` (a node's inputs shown
/// at its first visit only).
fn input_tree(
    node: &Rc<Node>,
    prefix: &str,
    visited: &mut std::collections::HashSet<*const Node>,
    out: &mut Vec<String>,
) {
    let inputs = node.inputs.borrow();
    for (i, (name, edge)) in inputs.iter().enumerate() {
        let last = i + 1 == inputs.len();
        let conn = if last {
            "\u{2514}\u{2500}\u{2500}\u{2500}"
        } else {
            "\u{251c}\u{2500}\u{2500}\u{2500}"
        };
        match edge {
            Edge::Node(child) => {
                let url = child
                    .reference
                    .as_ref()
                    .map(|r| r.0.show())
                    .unwrap_or_default();
                out.push(format!("{prefix}{conn}\x1b[1m{name}\x1b[0m: {url}"));
                if visited.insert(Rc::as_ptr(child)) {
                    let more = if last { "    " } else { "\u{2502}   " };
                    input_tree(child, &format!("{prefix}{more}"), visited, out);
                }
            }
            Edge::Follows(path) => out.push(format!(
                "{prefix}{conn}\x1b[1m{name}\x1b[0m follows input '{}'",
                path.join("/")
            )),
        }
    }
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("getFlake", 1, prim_get_flake as PrimFn)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(path: &str) -> FlakeRef {
        FlakeRef::from_attrs(
            [
                ("type".to_string(), Attr::Str("path".into())),
                ("path".to_string(), Attr::Str(path.into())),
                (
                    "narHash".to_string(),
                    Attr::Str("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()),
                ),
            ]
            .into(),
        )
        .unwrap()
    }

    #[test]
    fn lock_json_names_shared_and_clashing_nodes() {
        let shared = Rc::new(Node {
            reference: Some((reference("/a"), reference("/a"), false)),
            inputs: RefCell::new(BTreeMap::new()),
        });
        let other = Rc::new(Node {
            reference: Some((reference("/b"), reference("/b"), true)),
            inputs: RefCell::new(
                [
                    ("x".to_string(), Edge::Node(shared.clone())),
                    ("y".to_string(), Edge::Follows(vec!["x".into()])),
                ]
                .into(),
            ),
        });
        let root = Node::root();
        root.inputs
            .borrow_mut()
            .insert("x".into(), Edge::Node(other));
        root.inputs
            .borrow_mut()
            .insert("z".into(), Edge::Node(shared));
        let json: serde_json::Value = serde_json::from_str(&lock_json(&root)).unwrap();
        assert_eq!(json["root"], "root");
        assert_eq!(json["version"], 7);
        assert_eq!(json["nodes"]["root"]["inputs"]["x"], "x");
        assert_eq!(json["nodes"]["x"]["inputs"]["x"], "x_2");
        assert_eq!(json["nodes"]["root"]["inputs"]["z"], "x_2");
        assert_eq!(json["nodes"]["x"]["inputs"]["y"], serde_json::json!(["x"]));
        assert_eq!(json["nodes"]["x_2"]["flake"], false);
        assert_eq!(json["nodes"]["x_2"]["locked"]["path"], "/a");
        // Read back: the same tree, the shared node once.
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("flake.lock");
        std::fs::write(&file, lock_json(&root)).unwrap();
        let again = read_lock(&file).unwrap();
        assert_eq!(lock_json(&again), lock_json(&root));
        check_follows(&again).unwrap();
    }

    #[test]
    fn bad_lock_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("flake.lock");
        for (text, msg) in [
            ("{", "is not valid JSON"),
            (
                r#"{"version": 4, "nodes": {}, "root": "root"}"#,
                "has unsupported version 4",
            ),
            (
                r#"{"version": 7, "nodes": {}, "root": "root"}"#,
                "has no node 'root'",
            ),
            (
                r#"{"version": 7, "nodes": {"root": {"inputs": {"a": "a"}}, "a": {"locked": {"type": "path", "path": "/x"}, "original": {"type": "path", "path": "/x"}}}, "root": "root"}"#,
                "contains mutable lock",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = read_lock(&file).unwrap_err();
            assert!(e.msg.contains(msg), "{text}: {}", e.msg);
        }
        assert!(read_lock(&tmp.path().join("none"))
            .unwrap()
            .inputs
            .borrow()
            .is_empty());
    }

    #[test]
    fn follows_must_lead_somewhere() {
        let root = Node::root();
        root.inputs
            .borrow_mut()
            .insert("a".into(), Edge::Follows(vec!["nope".into()]));
        let e = check_follows(&root).unwrap_err();
        assert_eq!(e.msg, "input 'a' follows a non-existent input 'nope'");
    }
}
