//! Moving values a word at a time, for results that calls return through memory.
//!
//! A call returns a value (a [`crate::value::Value`], an evaluation result) by storing it
//! field by field, 8 bytes at a time, where its caller said. Moving such a value on
//! compiles to a copy in 16-byte pieces, and a piece read back while the two stores it
//! spans are still on their way to the cache cannot be served by either: the load waits
//! for both to land (a stall of a dozen cycles or more). On the evaluator's hot paths,
//! where a short call (`n: first + n`) is followed at once by moving its result into a
//! thunk or up to the caller, that stall was a good part of each step. [`relay`] moves a
//! value with one load per word, each served by the store that wrote it.

use std::mem::{size_of, ManuallyDrop, MaybeUninit};

/// `v`, moved one 8-byte word at a time (see the module's header).
#[inline(always)]
pub fn relay<T>(v: T) -> T {
    let v = ManuallyDrop::new(v);
    // SAFETY: a whole value of `T`, forgotten here: its copy takes over what it owns.
    unsafe { copy_words(&*v) }
}

/// A bitwise copy of `*src`, read one 8-byte word at a time.
///
/// # Safety
/// As `ptr::read`: the caller keeps only one of the two as the owner of what `*src` owns
/// (nothing, for a scalar).
#[inline(always)]
pub unsafe fn copy_words<T>(src: &T) -> T {
    const { assert!(size_of::<T>().is_multiple_of(8) && align_of::<T>() >= 8) };
    let words = size_of::<T>() / 8;
    let from = (src as *const T).cast::<MaybeUninit<u64>>();
    let mut out = MaybeUninit::<T>::uninit();
    let to = out.as_mut_ptr().cast::<MaybeUninit<u64>>();
    for i in 0..words {
        // SAFETY: word `i` of two values of whole, aligned words (checked above). A
        // volatile load is one load of exactly this word, never merged with the next.
        unsafe { to.add(i).write(std::ptr::read_volatile(from.add(i))) };
    }
    // SAFETY: every byte of `*src` was copied; ownership is the caller's to settle.
    unsafe { out.assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn relay_moves_values_whole() {
        assert!(matches!(relay(Value::Int(-7)), Value::Int(-7)));
        let s = Value::String(crate::value::NixString::plain("a string that is kept"));
        match relay(Ok::<Value, crate::error::EvalError>(s)) {
            Ok(Value::String(s)) => assert_eq!(s.s.as_str(), "a string that is kept"),
            _ => panic!("relay changed the value"),
        }
        let e: crate::error::EResult<Value> = crate::error::err("kept");
        match relay(e) {
            Err(e) => assert_eq!(e.msg, "kept"),
            Ok(_) => panic!("relay changed the result"),
        }
    }
}
