//! Source positions: every parsed file gets its own range of span offsets (see
//! [`firn_syntax::ast::shift_spans`]), so an offset names a file, a line and a column
//! (`__curPos`); a set made from syntax carries that syntax ([`AttrSet::origin`]), which
//! gives its attributes' positions (`builtins.unsafeGetAttrPos`).

use crate::rc_str::RcStr;
use std::rc::Rc;

use crate::value::*;

/// One parsed file.
struct SourceFile {
    base: u32,
    len: u32,
    origin: RcStr,
    /// The file's text, for error messages and line numbers. A file read from disk does not
    /// keep it (the texts of a package set's files were a twentieth of its evaluation's
    /// heap): it is read again the first time it is needed, as CppNix does for its error
    /// messages, and used only if it is still the text that was parsed.
    text: std::cell::OnceCell<Option<RcStr>>,
    /// For a file read from disk: a hash of the text parsed, to recognise it when read again.
    disk_hash: Option<u64>,
    /// Offsets (relative to the file) where lines start: found the first time a position in
    /// the file is asked for (most files never are).
    line_starts: std::cell::OnceCell<Box<[u32]>>,
}

/// The hash a file's text is recognised by when read again (see [`SourceFile::text`]).
pub fn text_hash(text: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6669726e).hash_one(text)
}

impl SourceFile {
    /// The text that was parsed, if it is still at hand.
    fn text(&self) -> Option<&str> {
        self.text
            .get_or_init(|| {
                let hash = self.disk_hash?;
                let text = std::fs::read(&*self.origin)
                    .map(firn_syntax::bytes::decode)
                    .ok()?;
                (text.len() == self.len as usize && text_hash(&text) == hash).then(|| text.into())
            })
            .as_deref()
    }

    /// Where the lines of `text` (this file's, from [`Self::text`]) start.
    fn starts(&self, text: &str) -> &[u32] {
        self.line_starts.get_or_init(|| {
            // Within `len`, which fits in a u32.
            firn_syntax::line_starts(text.as_bytes())
                .into_iter()
                .map(|s| s as u32)
                .collect()
        })
    }
}

#[derive(Default)]
pub struct Positions {
    /// By `base` (a file parsed ahead may be kept after files that took later ranges).
    files: std::collections::BTreeMap<u32, SourceFile>,
    offsets: Offsets,
}

/// The next free span offset, shared with the thread that parses files ahead (which takes
/// each file's range when it parses it, see [`crate::prefetch`]). Offset 0 is never given
/// (a memo of 0 means none).
#[derive(Clone, Default)]
pub struct Offsets(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Offsets {
    /// A range of `len + 1` offsets: its first, or None when the offsets are used up.
    pub fn reserve(&self, len: usize) -> Option<u32> {
        use std::sync::atomic::Ordering::Relaxed;
        let len = u32::try_from(len).ok()?;
        let mut cur = self.0.load(Relaxed);
        loop {
            let base = cur.max(1);
            let next = base.checked_add(len)?.checked_add(1)?;
            match self.0.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return Some(base),
                Err(now) => cur = now,
            }
        }
    }
}

impl Positions {
    /// Register the text of a source that is not a file (an expression given on the command
    /// line, say); returns the offset its spans must be moved by, or None when the offsets
    /// are used up (positions of later files are then unknown).
    pub fn add_file(&mut self, text: &str, origin: &str) -> Option<u32> {
        self.add(text, origin, None)
    }

    /// [`Self::add_file`] for the text of file `path` as [`firn_syntax::bytes::decode`]
    /// gives it: the text is read again when needed rather than kept.
    pub fn add_disk_file(&mut self, text: &str, path: &str) -> Option<u32> {
        self.add(text, path, Some(text_hash(text)))
    }

    /// [`Self::add_disk_file`] of a file whose range starts at `base`, taken from
    /// [`Self::offsets`] by the thread that parsed it, and whose text has hash `hash`
    /// ([`text_hash`]).
    pub fn add_parsed_disk_file(&mut self, base: u32, len: usize, path: &str, hash: u64) {
        self.insert(base, len, None, path, Some(hash));
    }

    /// The span offsets, for a thread that parses files ahead.
    pub fn offsets(&self) -> Offsets {
        self.offsets.clone()
    }

    fn add(&mut self, text: &str, origin: &str, disk_hash: Option<u64>) -> Option<u32> {
        let base = self.offsets.reserve(text.len())?;
        let kept = disk_hash.is_none().then_some(text);
        self.insert(base, text.len(), kept, origin, disk_hash);
        Some(base)
    }

    /// Keep file `origin`'s range from `base`, `len` long, with its text if `text` is given
    /// (else it is read again when needed, and recognised by `disk_hash`).
    fn insert(
        &mut self,
        base: u32,
        len: usize,
        text: Option<&str>,
        origin: &str,
        disk_hash: Option<u64>,
    ) {
        let kept = std::cell::OnceCell::new();
        if let Some(t) = text {
            let _ = kept.set(Some(t.into()));
        }
        let f = SourceFile {
            base,
            // Within u32: the range was reserved.
            len: len as u32,
            origin: origin.into(),
            text: kept,
            disk_hash,
            line_starts: std::cell::OnceCell::new(),
        };
        self.files.insert(base, f);
    }

    /// The file whose range holds offset `offset` (or ends before it, if none does).
    fn file_at(&self, offset: u32) -> Option<&SourceFile> {
        self.files.range(..=offset).next_back().map(|(_, f)| f)
    }

    /// File, line and column (1-based) of a span offset.
    pub fn locate(&self, offset: u32) -> Option<(RcStr, u32, u32)> {
        let f = self.file_at(offset)?;
        let rel = offset - f.base;
        if rel > f.len {
            return None;
        }
        let text = f.text()?;
        let starts = f.starts(text);
        let line = starts.partition_point(|&s| s <= rel);
        let start = starts[line - 1];
        // Columns count the bytes the text stands for (see `firn_syntax::bytes`).
        let stand_ins = text
            .as_bytes()
            .get(start as usize..rel as usize)
            .map_or(0, firn_syntax::bytes::count_stand_ins);
        let col = rel - start - 3 * stand_ins as u32 + 1;
        Some((f.origin.clone(), line as u32, col))
    }

    /// A position as CppNix 2.8 prints one in a value or message: `FILE:LINE:COL`, with
    /// `(string)`/`(stdin)` for expressions not read from a file, or `undefined position`.
    pub fn shown(&self, offset: u32) -> String {
        match self.locate(offset) {
            Some((file, line, col)) => {
                let file = match &*file {
                    "«string»" => "(string)",
                    "«stdin»" => "(stdin)",
                    f => f,
                };
                format!("{file}:{line}:{col}")
            }
            None => "undefined position".to_string(),
        }
    }

    /// The location of a span offset as an error shows it (`at FILE:LINE:COL:` and the
    /// lines around it).
    pub fn render(&self, offset: u32) -> Option<String> {
        let f = self.file_at(offset)?;
        let rel = offset.checked_sub(f.base).filter(|r| *r <= f.len)?;
        let text = f.text()?;
        Some(firn_syntax::render_location_in(
            text,
            f.starts(text),
            &f.origin,
            rel as usize,
        ))
    }

    /// The source text of the file that holds span offset `offset`, from its start up to
    /// `offset`.
    pub fn text_before(&self, offset: u32) -> Option<&str> {
        let f = self.file_at(offset)?;
        let to = offset.checked_sub(f.base)? as usize;
        f.text()?.get(..to)
    }

    /// The source text between span offsets `start` and `end` of one file.
    pub fn text(&self, start: u32, end: u32) -> Option<&str> {
        let f = self.file_at(start)?;
        let from = start.checked_sub(f.base)? as usize;
        let to = (end.checked_sub(f.base)? as usize).min(f.len as usize);
        f.text()?.get(from..to)
    }

    /// The offset of the first `needle` between span offsets `start` and `end` of one
    /// file (an operator between its operands, say), if there is one.
    pub fn find_between(&self, start: u32, end: u32, needle: &str) -> Option<u32> {
        let found = self.text(start, end)?.find(needle)?;
        u32::try_from(found).ok()?.checked_add(start)
    }

    /// Where an operand written between span offsets `start` and `end` begins as CppNix
    /// places it: at the parentheses around it, or the `${` of an interpolation (the
    /// expression's own span leaves them out). Only blanks may stand between them.
    pub fn operand_start(&self, start: u32, end: u32) -> u32 {
        let Some(f) = self.file_at(start) else {
            return start;
        };
        let Some(text) = f.text().map(str::as_bytes) else {
            return start;
        };
        let (Some(mut from), Some(mut to)) = (
            start.checked_sub(f.base).map(|x| x as usize),
            end.checked_sub(f.base).map(|x| x as usize),
        ) else {
            return start;
        };
        let blank = |c: &u8| c.is_ascii_whitespace();
        loop {
            let before = text[..from.min(text.len())].iter().rposition(|c| !blank(c));
            let after = text
                .get(to..)
                .and_then(|t| t.iter().position(|c| !blank(c)))
                .map(|p| to + p);
            match (before, after) {
                (Some(b), Some(a)) if text[b] == b'(' && text[a] == b')' => {
                    from = b;
                    to = a + 1;
                }
                (Some(b), Some(a)) if b > 0 && &text[b - 1..=b] == b"${" && text[a] == b'}' => {
                    return f.base + (b - 1) as u32;
                }
                _ => return f.base + from as u32,
            }
        }
    }

    /// The `{ column, file, line }` set Nix gives for a position (null when unknown).
    pub fn value(&self, offset: u32) -> Value {
        match self.locate(offset) {
            None => Value::Null,
            Some((file, line, col)) => {
                let mut m = AttrMap::new();
                m.insert("column".into(), Thunk::value(Value::Int(col as i64)));
                m.insert("file".into(), Thunk::value(Value::str(&*file)));
                m.insert("line".into(), Thunk::value(Value::Int(line as i64)));
                Value::Attrs(Rc::new(m.into()))
            }
        }
    }

    /// The span offset where attribute `name` of `set` was defined, if known.
    pub fn attr_offset(
        &self,
        set: &AttrSet,
        name: &str,
        interner: &firn_syntax::Interner,
    ) -> Option<u32> {
        origin_offset(set.origin.as_ref()?, name, interner)
    }
}

/// Where `origin` defines `name`, if it does.
fn origin_offset(origin: &Origin, name: &str, interner: &firn_syntax::Interner) -> Option<u32> {
    match origin {
        // A name the syntax has is interned: look its symbol up (a literal's are sorted).
        Origin::Attrs(a) => a.attrs.get(&interner.find(name)?).map(|d| d.span.start),
        Origin::Formals(f) => {
            let s = interner.find(name)?;
            f.formals.iter().find(|x| x.name == s).map(|x| x.span.start)
        }
        Origin::Update(u) => origin_offset(&u.right, name, interner)
            .or_else(|| origin_offset(&u.left, name, interner)),
        Origin::Table(t) => t.get(name),
        Origin::Sides(s) if s.right_set.contains_key(name) => {
            origin_offset(&s.right, name, interner)
        }
        Origin::Sides(s) => origin_offset(&s.left, name, interner),
    }
}

/// The origin of a set literal `a` whose attributes (`len` of them) include those it made
/// dynamically, `dynamic` (name and offset of each): `a` itself for the static ones, under a
/// table of the dynamic ones.
pub(crate) fn literal_origin(
    a: &'static firn_syntax::ast::Attrs,
    dynamic: Vec<(RcStr, u32)>,
    len: usize,
) -> Origin {
    if dynamic.is_empty() {
        return Origin::Attrs(a);
    }
    let table = PosTable::new(dynamic);
    Origin::Update(Rc::new(crate::value::UpdateOrigin {
        // All static names are the set's (`__overrides` aside, which may add others).
        exact: a.attrs.len() + table.len() == len && u32::try_from(len).is_ok(),
        len: u32::try_from(len).unwrap_or(u32::MAX),
        left: Origin::Attrs(a),
        right: Origin::Table(Rc::new(table)),
        depth: 1,
    }))
}

/// Whether `origin`, the origin of `set`, names exactly `set`'s attributes (it knows all
/// of them, and no others).
fn exact_for(origin: &Origin, set: &AttrSet) -> bool {
    match origin {
        Origin::Attrs(a) => a.dynamic.is_empty() && a.attrs.len() == set.len(),
        Origin::Formals(f) => f.formals.len() == set.len(),
        Origin::Update(u) => u.exact && u.len as usize == set.len(),
        Origin::Table(t) => t.len() == set.len(),
        // Its sides' origins may know more names.
        Origin::Sides(_) => false,
    }
}

/// The origin of `x // y`, a set of `len` attributes, when `y`'s origin, `right`, gives the
/// position of each of `y`'s attributes or none, and none for a name of `x` that `y` does not
/// have: both sides' (`x`'s for the names `right` does not know), or only `y`'s where `x` has
/// no origin or its chain of updates is long already. `right_exact`: whether `right` names
/// exactly `y`'s attributes. A chain that would grow past [`UpdateOrigin::MAX_DEPTH`] is
/// made into a table of the result's positions where that is cheap ([`flattened`]).
pub(crate) fn joined_origin(
    x: &AttrSet,
    right: Origin,
    right_exact: bool,
    result: &AttrMap,
    interner: &firn_syntax::Interner,
) -> Origin {
    match &x.origin {
        Some(left) => joined(
            left,
            exact_for(left, x),
            right,
            right_exact,
            result,
            interner,
        ),
        None => right,
    }
}

/// `right` over `left` (the origin of `x // y` for sides with those origins; each `_exact`:
/// whether that origin names exactly its side's attributes), the chain cut and flattened
/// past [`crate::value::UpdateOrigin::MAX_DEPTH`] (see [`flattened`]).
fn joined(
    left: &Origin,
    left_exact: bool,
    right: Origin,
    right_exact: bool,
    result: &AttrMap,
    interner: &firn_syntax::Interner,
) -> Origin {
    let len = result.len();
    // Either side may be a chain (a fold from the left or from the right).
    let depth = left.depth().max(right.depth()).saturating_add(1);
    if depth > crate::value::UpdateOrigin::MAX_DEPTH {
        return match right_exact {
            true => flattened(result, left, &right, interner).unwrap_or(right),
            false => right,
        };
    }
    Origin::Update(Rc::new(crate::value::UpdateOrigin {
        left: left.clone(),
        right,
        depth,
        exact: right_exact && left_exact && u32::try_from(len).is_ok(),
        len: u32::try_from(len).unwrap_or(u32::MAX),
    }))
}

/// The origin of `x // y` (neither empty; the result has `len` attributes). Where `y`'s
/// origin names exactly `y`'s attributes, both sides' ([`joined_origin`]). Otherwise `y`'s,
/// which gives the positions of `y`'s attributes (those of `x` are not known then), unless
/// `y` lost to `removeAttrs` or `intersectAttrs` an attribute its syntax defines that `x`
/// has: that attribute of the result is `x`'s, and `y`'s origin would give it the removed
/// definition's position, so the result gets a table of each attribute's position looked up
/// on its own side ([`placed_update`]). Checked name by name only
/// when `y` has fewer attributes than its syntax defines statically (or names made
/// dynamically).
#[inline]
pub(crate) fn update_origin(
    x: &AttrSet,
    y: &Rc<AttrSet>,
    result: &AttrMap,
    interner: &firn_syntax::Interner,
) -> Option<Origin> {
    let origin = y.origin.as_ref()?;
    if exact_for(origin, y) {
        return Some(joined_origin(x, origin.clone(), true, result, interner));
    }
    checked_update_origin(x, y, origin, result, interner)
}

/// [`update_origin`] where `y` may have lost attributes its syntax defines (or has names
/// made dynamically, as a fold's `acc // { ${n} = v; }` has at every step: not rare).
#[inline(never)]
fn checked_update_origin(
    x: &AttrSet,
    y: &Rc<AttrSet>,
    origin: &Origin,
    result: &AttrMap,
    interner: &firn_syntax::Interner,
) -> Option<Origin> {
    let lost = |s: firn_syntax::ast::Symbol| {
        let name = interner.name(s);
        !y.contains_key(name) && x.contains_key(name)
    };
    let wrong = match origin {
        Origin::Attrs(a) => a.attrs.iter().any(|(s, _)| lost(*s)),
        Origin::Formals(f) => f.formals.iter().any(|f| lost(f.name)),
        Origin::Table(t) => t.names().any(|n| !y.contains_key(n) && x.contains_key(n)),
        // A chain's names, if there are few enough to check one by one.
        Origin::Update(_) | Origin::Sides(_) => {
            let mut names = Vec::new();
            !link_entries(origin, interner, &mut names)
                || names
                    .iter()
                    .any(|(n, _)| !y.contains_key(n) && x.contains_key(n))
        }
    };
    if wrong {
        return placed_update(x, y, result, interner);
    }
    // `x`'s origin may answer for the names `y`'s syntax does not know: those it lost (not
    // `x`'s, just checked), and those made dynamically. A few of those are checked to be
    // neither `x`'s nor known to its origin (which might otherwise give a position of its
    // own syntax to `y`'s attribute); for more, `y`'s positions only.
    let joinable = match origin {
        Origin::Attrs(a) if a.dynamic.is_empty() => true,
        Origin::Attrs(a) => {
            y.len() <= 8
                && y.keys().all(|k| {
                    a.attrs.iter().any(|(s, _)| interner.name(*s) == &**k)
                        || (!x.contains_key(k)
                            && x.origin
                                .as_ref()
                                .is_none_or(|o| origin_offset(o, k, interner).is_none()))
                })
        }
        Origin::Formals(_) | Origin::Table(_) => true,
        // Knows every name of the set it was made for (of which `y` has some).
        Origin::Update(u) => u.exact,
        Origin::Sides(_) => false,
    };
    Some(if joinable {
        joined_origin(x, origin.clone(), false, result, interner)
    } else {
        origin.clone()
    })
}

/// The positions of `x // y` (its attributes `result`; `x`'s origin `left`, `right` naming
/// exactly `y`'s attributes) as one table, so that a fold's chain of updates does not lose its
/// oldest names when it is cut. The chain's leaves are small (at most [`CHAIN_NAMES_MAX`]
/// names on either side of the largest), but for one, its base: a table (an earlier cut's)
/// or a literal, which may be large, on the left (a fold from the left) or on the right (a
/// fold from the right). The result's names (sorted) are merged with the small leaves' and
/// the base table's (sorted), so a cut costs about what one update of the set does.
#[cold]
fn flattened(
    result: &AttrMap,
    left: &Origin,
    right: &Origin,
    interner: &firn_syntax::Interner,
) -> Option<Origin> {
    // The leaves in look-up order (the first that knows a name gives its position).
    let mut leaves = Vec::new();
    if !chain_leaves(right, &mut leaves) || !chain_leaves(left, &mut leaves) {
        return None;
    }
    let base = (0..leaves.len()).max_by_key(|&i| origin_len(leaves[i]))?;
    // The small leaves' names, before the base's and after them; of a name, the first wins.
    fn listed<'a>(
        part: &[&'a Origin],
        interner: &'a firn_syntax::Interner,
    ) -> Option<Vec<(&'a str, u32)>> {
        let mut entries = Vec::new();
        for o in part {
            if !link_entries(o, interner, &mut entries) {
                return None;
            }
        }
        entries.sort_by(|a, b| crate::rc_str::cmp_str(a.0, b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        Some(entries)
    }
    let before = listed(&leaves[..base], interner)?;
    let after = listed(&leaves[base + 1..], interner)?;
    let base = leaves[base];
    let table = match base {
        Origin::Table(t) => t.entries(),
        _ => &[],
    };
    // One pass over the result's names; the table is sorted as they are, and mostly shares
    // their handles, so it is followed by pointer comparisons.
    let find = |entries: &[(&str, u32)], at: &mut usize, k: &str| {
        while *at < entries.len() && crate::rc_str::cmp_str(entries[*at].0, k).is_lt() {
            *at += 1;
        }
        entries.get(*at).filter(|e| e.0 == k).map(|e| e.1)
    };
    let (mut b, mut a, mut t) = (0, 0, 0);
    let mut entries = Vec::with_capacity(result.len());
    for k in result.keys() {
        let in_base = || match base {
            Origin::Table(_) => {
                while t < table.len() && table[t].0 < *k {
                    t += 1;
                }
                table.get(t).filter(|(n, _)| n == k).map(|e| e.1)
            }
            _ => origin_offset(base, k, interner),
        };
        let offset = find(&before, &mut b, k)
            .or_else(in_base)
            .or_else(|| find(&after, &mut a, k))?;
        entries.push((k.clone(), offset));
    }
    Some(Origin::Table(Rc::new(PosTable::from_sorted(entries))))
}

/// Add the leaves of the chain of updates `origin` (itself if it is not one) to `out`, in
/// look-up order (a link's right side before its left); false if there are more than
/// [`CHAIN_LEAVES_MAX`].
fn chain_leaves<'a>(origin: &'a Origin, out: &mut Vec<&'a Origin>) -> bool {
    match origin {
        Origin::Update(u) => chain_leaves(&u.right, out) && chain_leaves(&u.left, out),
        leaf if out.len() < CHAIN_LEAVES_MAX => {
            out.push(leaf);
            true
        }
        _ => false,
    }
}

/// How many names a leaf of a chain of updates knows.
fn origin_len(origin: &Origin) -> usize {
    match origin {
        Origin::Attrs(a) => a.attrs.len(),
        Origin::Formals(f) => f.formals.len(),
        Origin::Table(t) => t.len(),
        Origin::Update(_) => 0,
        // It cannot be listed (see `link_entries`), so it is taken as the base.
        Origin::Sides(_) => usize::MAX,
    }
}

/// How many leaves [`flattened`] takes from a chain of updates (a chain cut at
/// [`UpdateOrigin::MAX_DEPTH`](crate::value::UpdateOrigin::MAX_DEPTH) has a few dozen; a
/// tree of updates could have many more).
const CHAIN_LEAVES_MAX: usize = 4 * CHAIN_NAMES_MAX;

/// Add the names and offsets `origin` knows to `out` (newest first, for a chain); false if
/// there are more than [`CHAIN_NAMES_MAX`] in all or one's position is not known.
fn link_entries<'a>(
    origin: &'a Origin,
    interner: &'a firn_syntax::Interner,
    out: &mut Vec<(&'a str, u32)>,
) -> bool {
    let room = |n: usize, out: &Vec<(&str, u32)>| out.len() + n <= CHAIN_NAMES_MAX;
    match origin {
        Origin::Attrs(a) if room(a.attrs.len(), out) => out.extend(
            a.attrs
                .iter()
                .map(|(s, d)| (interner.name(*s), d.span.start)),
        ),
        Origin::Formals(f) if room(f.formals.len(), out) => out.extend(
            f.formals
                .iter()
                .map(|x| (interner.name(x.name), x.span.start)),
        ),
        Origin::Table(t) if room(t.len(), out) => {
            out.extend(t.entries().iter().map(|(n, o)| (n.as_str(), *o)))
        }
        Origin::Update(u) => {
            return link_entries(&u.right, interner, out) && link_entries(&u.left, interner, out)
        }
        _ => return false,
    }
    true
}

/// The origin of `x // y` (attributes `result`) where `y`'s origin also knows names `y` lost
/// and `x` has. Each attribute's position must come from its own side, so one side's names
/// are looked up into a table put over the other side's origin: `y`'s names over `x`'s
/// origin (which knows all of `x`'s), or, where `y` is the larger, the names only `x` has over
/// `y`'s origin (the lost names are among them, so the table answers for them first). A
/// table is made only for the smaller side, of at most [`TABLE_LOOKUPS_MAX`] names; with
/// two larger sides, both origins told apart by `y`'s names ([`Origin::Sides`]), or, where
/// that would make too deep a chain, a table of the result's positions.
#[cold]
fn placed_update(
    x: &AttrSet,
    y: &Rc<AttrSet>,
    result: &AttrMap,
    interner: &firn_syntax::Interner,
) -> Option<Origin> {
    let (xo, yo) = (x.origin.as_ref()?, y.origin.as_ref()?);
    let only_x = result.len() - y.len();
    if y.len() <= TABLE_LOOKUPS_MAX {
        let ys = table_of(y.keys().map(|k| (k.clone(), yo)), y.len(), interner)?;
        return Some(joined(xo, exact_for(xo, x), ys, true, result, interner));
    }
    if only_x > TABLE_LOOKUPS_MAX {
        let depth = xo.depth().max(yo.depth()).saturating_add(1);
        let sides = Origin::Sides(Rc::new(crate::value::SidesOrigin {
            left: xo.clone(),
            right: yo.clone(),
            right_set: y.clone(),
            depth,
        }));
        if depth <= crate::value::UpdateOrigin::MAX_DEPTH {
            return Some(sides);
        }
        // Too deep (a fold of such updates): the result's positions as a table, once in
        // `MAX_DEPTH` steps.
        let entries = result
            .keys()
            .filter_map(|k| Some((k.clone(), origin_offset(&sides, k, interner)?)))
            .collect();
        return Some(Origin::Table(Rc::new(PosTable::from_sorted(entries))));
    }
    let xs = x
        .keys()
        .filter(|k| !y.contains_key(k))
        .map(|k| (k.clone(), xo));
    let xs = table_of(xs, only_x, interner)?;
    // `y`'s origin may know removed names that neither side has: not exact (the table
    // names exactly the names only `x` has).
    Some(joined(yo, false, xs, true, result, interner))
}

/// The most attributes [`table_of`] looks up one by one (each look-up walks a chain of
/// updates): a table made at every such update of a large set would cost far more than the
/// update.
const TABLE_LOOKUPS_MAX: usize = 256;

/// A table of the positions of a set's `len` attributes, each name looked up in the origin it
/// comes with. None for a large set, or if a position is not known: a table names all of its
/// set's attributes (see [`exact_for`]).
fn table_of<'o>(
    names: impl Iterator<Item = (RcStr, &'o Origin)>,
    len: usize,
    interner: &firn_syntax::Interner,
) -> Option<Origin> {
    if len > TABLE_LOOKUPS_MAX {
        return None;
    }
    let mut entries = Vec::with_capacity(len);
    for (name, origin) in names {
        let offset = origin_offset(origin, &name, interner)?;
        entries.push((name, offset));
    }
    (entries.len() == len).then(|| Origin::Table(Rc::new(PosTable::new(entries))))
}

/// How many names [`link_entries`] lists at most: the check it serves runs on every such
/// update, so a long chain over large sets is not walked.
const CHAIN_NAMES_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_lines_and_columns() {
        let mut p = Positions::default();
        let a = p.add_file("ab\ncd\n", "/a.nix").unwrap();
        let b = p.add_file("x", "/b.nix").unwrap();
        assert_eq!(p.locate(a).unwrap(), ("/a.nix".into(), 1, 1));
        assert_eq!(p.locate(a + 4).unwrap(), ("/a.nix".into(), 2, 2));
        assert_eq!(p.locate(b).unwrap(), ("/b.nix".into(), 1, 1));
        assert!(p.locate(0).is_none());
    }

    /// A file's text is read again for positions, and only trusted while it is unchanged.
    #[test]
    fn a_file_is_read_again_while_unchanged() {
        let dir = std::env::temp_dir().join(format!("firn-positions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.nix");
        let path_s = path.to_string_lossy().into_owned();
        std::fs::write(&path, "ab\ncd\n").unwrap();
        let mut p = Positions::default();
        let a = p.add_disk_file("ab\ncd\n", &path_s).unwrap();
        let b = p.add_disk_file("xy\n", &path_s).unwrap();
        assert_eq!(p.locate(a + 4).unwrap(), (path_s.as_str().into(), 2, 2));
        assert_eq!(p.text(a + 3, a + 5), Some("cd"));
        assert!(p.render(a + 4).unwrap().contains("cd"));
        // The second registration's text is no longer what the file holds.
        assert!(p.locate(b).is_none());
        assert!(p.render(b).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
