//! [`RcStr`]: a shared immutable string behind one thin pointer, for string values, paths
//! and attribute names.
//!
//! `RcStr` is a fat pointer (address and length, 16 bytes) to a block that also holds two
//! counts. `RcStr` keeps one count and the length in the block, so the handle is 8 bytes:
//! an attribute is then a name and a thunk in 16 bytes, and a string value (with its
//! context) fits the 24-byte [`crate::value::Value`], which keeps a thunk at 32 bytes.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::borrow::Borrow;
use std::cell::Cell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ptr::NonNull;

#[repr(C)]
struct Header {
    count: Cell<usize>,
    len: usize,
}

/// A reference-counted, immutable UTF-8 string; clones share the bytes.
pub struct RcStr {
    ptr: NonNull<Header>,
    _not_send: PhantomData<*const ()>,
}

fn layout(len: usize) -> Layout {
    match Layout::new::<Header>().extend(Layout::array::<u8>(len).unwrap_or_else(|_| too_long())) {
        Ok((l, _)) => l,
        Err(_) => too_long(),
    }
}

#[cold]
fn too_long() -> ! {
    panic!("string too long to allocate")
}

impl RcStr {
    pub fn new(s: &str) -> RcStr {
        let l = layout(s.len());
        // SAFETY: the layout has a non-zero size (the header); the bytes are written
        // before any handle can read them.
        unsafe {
            let p = alloc(l) as *mut Header;
            let Some(ptr) = NonNull::new(p) else {
                handle_alloc_error(l)
            };
            ptr.as_ptr().write(Header {
                count: Cell::new(1),
                len: s.len(),
            });
            let bytes = (p as *mut u8).add(std::mem::size_of::<Header>());
            std::ptr::copy_nonoverlapping(s.as_ptr(), bytes, s.len());
            RcStr {
                ptr,
                _not_send: PhantomData,
            }
        }
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: the block lives while any handle does.
        unsafe { self.ptr.as_ref() }
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        let len = self.header().len;
        // SAFETY: `len` UTF-8 bytes follow the header (written by `new`, never changed).
        unsafe {
            let bytes = (self.ptr.as_ptr() as *const u8).add(std::mem::size_of::<Header>());
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(bytes, len))
        }
    }

    /// Whether two handles share one block.
    #[inline]
    pub fn ptr_eq(a: &RcStr, b: &RcStr) -> bool {
        a.ptr == b.ptr
    }
}

/// `a.cmp(b)` for the short strings attribute names are: compares eight bytes at a time
/// in registers instead of calling `memcmp` (the same order: bytewise, then by length).
#[inline]
pub fn cmp_str(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

impl Clone for RcStr {
    #[inline]
    fn clone(&self) -> RcStr {
        let c = &self.header().count;
        let n = c
            .get()
            .checked_add(1)
            .unwrap_or_else(|| std::process::abort());
        c.set(n);
        RcStr {
            ptr: self.ptr,
            _not_send: PhantomData,
        }
    }
}

impl Drop for RcStr {
    #[inline]
    fn drop(&mut self) {
        let c = &self.header().count;
        let n = c.get() - 1;
        if n == 0 {
            let l = layout(self.header().len);
            // SAFETY: the last handle; the block was allocated with this layout.
            unsafe { dealloc(self.ptr.as_ptr() as *mut u8, l) }
        } else {
            c.set(n);
        }
    }
}

impl std::ops::Deref for RcStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for RcStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for RcStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Default for RcStr {
    fn default() -> RcStr {
        RcStr::new("")
    }
}

impl PartialEq for RcStr {
    #[inline]
    fn eq(&self, other: &RcStr) -> bool {
        RcStr::ptr_eq(self, other) || self.as_str() == other.as_str()
    }
}

impl Eq for RcStr {}

impl PartialEq<str> for RcStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RcStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for RcStr {
    fn partial_cmp(&self, other: &RcStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RcStr {
    #[inline]
    fn cmp(&self, other: &RcStr) -> std::cmp::Ordering {
        if RcStr::ptr_eq(self, other) {
            return std::cmp::Ordering::Equal;
        }
        cmp_str(self.as_str(), other.as_str())
    }
}

impl Hash for RcStr {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl fmt::Display for RcStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for RcStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for RcStr {
    fn from(s: &str) -> RcStr {
        RcStr::new(s)
    }
}

impl From<&String> for RcStr {
    fn from(s: &String) -> RcStr {
        RcStr::new(s)
    }
}

impl From<String> for RcStr {
    fn from(s: String) -> RcStr {
        RcStr::new(&s)
    }
}

impl From<Box<str>> for RcStr {
    fn from(s: Box<str>) -> RcStr {
        RcStr::new(&s)
    }
}

impl From<std::borrow::Cow<'_, str>> for RcStr {
    fn from(s: std::borrow::Cow<'_, str>) -> RcStr {
        RcStr::new(&s)
    }
}

impl From<&RcStr> for RcStr {
    fn from(s: &RcStr) -> RcStr {
        s.clone()
    }
}

impl From<RcStr> for String {
    fn from(s: RcStr) -> String {
        s.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::RcStr;

    #[test]
    fn shares_and_compares_by_content() {
        let a = RcStr::from("hello");
        let b = a.clone();
        let c = RcStr::from(String::from("hello"));
        assert!(RcStr::ptr_eq(&a, &b));
        assert!(!RcStr::ptr_eq(&a, &c));
        assert_eq!(a, c);
        assert_eq!(&*a, "hello");
        let (x, y) = (RcStr::from("a"), RcStr::from("b"));
        assert!(x < y && y.cmp(&x) == std::cmp::Ordering::Greater);
        assert_eq!(RcStr::from("").len(), 0);
        drop(a);
        assert_eq!(b.as_str(), "hello");
    }

    #[test]
    fn cmp_str_is_str_order() {
        let words = [
            "",
            "a",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "abcdefgg",
            "abcdefgh\u{7f}",
            "b",
            "zzzzzzzzzzzzzzzzz",
            "é",
            "e",
            "opt1",
            "opt10",
            "opt2",
            "\u{0}",
            "abcdefghabcdefgh",
        ];
        for x in words {
            for y in words {
                assert_eq!(super::cmp_str(x, y), x.cmp(y), "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn thin() {
        assert_eq!(std::mem::size_of::<RcStr>(), 8);
        assert_eq!(std::mem::size_of::<Option<RcStr>>(), 8);
    }

    #[test]
    fn long_and_unicode() {
        let s = "é".repeat(10_000);
        let r = RcStr::from(s.as_str());
        assert_eq!(r.as_str(), s);
        let shared: Vec<RcStr> = (0..100).map(|_| r.clone()).collect();
        drop(r);
        assert!(shared.iter().all(|x| x.as_str() == s));
    }
}
