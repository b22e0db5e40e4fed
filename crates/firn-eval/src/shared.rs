//! [`Shared`]: a single-threaded reference-counted box with one count and no weak
//! references, for the evaluator's most numerous objects (thunks and scopes).
//!
//! `std::rc::Rc` keeps a strong and a weak count (16 bytes) in front of every value; the
//! evaluator never makes weak references, and with millions of thunks alive on a real
//! package set the second word is a noticeable share of the heap. This type keeps one
//! count. It is `!Send` and `!Sync` (it holds a raw pointer), like `Rc`.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

struct Inner<T> {
    count: Cell<usize>,
    value: T,
}

/// A shared, immutable `T` freed when the last handle is dropped.
pub struct Shared<T> {
    ptr: NonNull<Inner<T>>,
    /// Owns an `Inner<T>` (for drop checking).
    _owns: PhantomData<Inner<T>>,
}

impl<T> Shared<T> {
    /// The pool block size for this type (see [`crate::pool`]), or 0 for the general
    /// allocator.
    const CLASS: usize = crate::pool::class(std::alloc::Layout::new::<Inner<T>>());

    #[inline]
    pub fn new(value: T) -> Shared<T> {
        Self::new_with(|| value)
    }

    /// [`Self::new`] of the value `make` returns, made once the block is taken: its fields
    /// are then stored into the block directly. A value made before (the argument of
    /// `new`) is assembled on the stack first and copied over in 16-byte pieces, which
    /// stall when they read back the narrower stores that assembled it.
    #[inline(always)]
    pub fn new_with(make: impl FnOnce() -> T) -> Shared<T> {
        if Self::CLASS == 0 {
            let inner = Inner {
                count: Cell::new(1),
                value: make(),
            };
            return Shared {
                ptr: NonNull::from(Box::leak(Box::new(inner))),
                _owns: PhantomData,
            };
        }
        let block = crate::pool::take(Self::CLASS).cast::<Inner<T>>();
        // SAFETY: a fresh block of at least `size_of::<Inner<T>>()` bytes, aligned to 16
        // (at least `T`'s alignment, by `class`). The count and then the value `make`
        // returns are written into it, the value made only now (see above).
        unsafe {
            ptr::addr_of_mut!((*block).count).write(Cell::new(1));
            ptr::addr_of_mut!((*block).value).write(make());
        }
        Shared {
            // SAFETY: blocks are never null.
            ptr: unsafe { NonNull::new_unchecked(block) },
            _owns: PhantomData,
        }
    }

    #[inline]
    fn inner(&self) -> &Inner<T> {
        // SAFETY: the allocation lives while any handle (such as `self`) does.
        unsafe { self.ptr.as_ref() }
    }

    /// The value, when `this` is its last handle (the block is given back without dropping
    /// the value, which the caller now owns); otherwise the handle is dropped (the count
    /// lowered) and `None`. As `Rc::into_inner`, for a caller that takes the value apart
    /// with its common case inline, where the generic drop would call out of line.
    #[inline(always)]
    pub fn into_unique(this: Shared<T>) -> Option<T> {
        // SAFETY: the value is read out whole, once; the block is never used again.
        unsafe { Self::take_unique(this, |p| ptr::read(p)) }
    }

    /// [`Self::into_unique`] for a caller that moves the value's fields out one by one:
    /// when `this` is the last handle, `take` gets the value in place and returns what it
    /// moved out, and the block is given back. Reading the value whole copies it in wide
    /// pieces, and a piece that spans two narrower stores still in flight (a scope made
    /// just before a short call) stalls until they land; field by field, each load matches
    /// the store that wrote it.
    ///
    /// # Safety
    /// `take` must move out (`ptr::read`) or drop in place every field of the value that
    /// owns anything: the block is freed without dropping it, and never read again.
    #[inline(always)]
    pub unsafe fn take_unique<R>(this: Shared<T>, take: impl FnOnce(*mut T) -> R) -> Option<R> {
        let c = &this.inner().count;
        let n = c.get();
        if n != 1 {
            c.set(n - 1);
            std::mem::forget(this);
            return None;
        }
        let p = this.ptr.as_ptr();
        std::mem::forget(this);
        // SAFETY: this was the last handle, forgotten above; the caller takes the value's
        // contents (see the function's contract) and the block is never used again.
        let r = take(unsafe { ptr::addr_of_mut!((*p).value) });
        if Self::CLASS == 0 {
            // SAFETY: the pointer came from `Box::leak`; freed as uninitialised memory (the
            // value's contents were taken above, so nothing is dropped twice).
            drop(unsafe { Box::from_raw(p.cast::<std::mem::MaybeUninit<Inner<T>>>()) });
        } else {
            // SAFETY: the block came from the pool for this class on this thread, and its
            // contents were taken.
            unsafe { crate::pool::give(p.cast(), Self::CLASS) };
        }
        Some(r)
    }

    /// The value, mutably, when `this` is its only handle (as `Rc::get_mut`): for a caller
    /// that would otherwise drop the object and make a new one of the same kind (the scopes
    /// of `foldl'`'s calls, rebound for each element).
    #[inline(always)]
    pub fn get_mut(this: &mut Shared<T>) -> Option<&mut T> {
        if this.inner().count.get() != 1 {
            return None;
        }
        // SAFETY: `this` is the only handle and is borrowed mutably for the result's
        // lifetime, so no other reference to the value exists or can be made meanwhile.
        Some(unsafe { &mut (*this.ptr.as_ptr()).value })
    }

    /// Whether two handles point to the same value.
    #[inline]
    pub fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        a.ptr == b.ptr
    }

    /// The address of the shared value (an identity for cycle detection).
    #[inline]
    pub fn addr(this: &Shared<T>) -> usize {
        this.ptr.as_ptr() as usize
    }
}

impl<T> Clone for Shared<T> {
    #[inline]
    fn clone(&self) -> Shared<T> {
        let c = &self.inner().count;
        // Every handle is at least a word of memory, so the count cannot reach the
        // maximum without a `mem::forget` loop; stop rather than wrap around.
        let n = c
            .get()
            .checked_add(1)
            .unwrap_or_else(|| std::process::abort());
        c.set(n);
        Shared {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Shared<T> {
    #[inline]
    fn drop(&mut self) {
        let c = &self.inner().count;
        let n = c.get() - 1;
        if n == 0 {
            let p = self.ptr.as_ptr();
            if Self::CLASS == 0 {
                // SAFETY: this was the last handle; the pointer came from `Box::leak`.
                drop(unsafe { Box::from_raw(p) });
            } else {
                // SAFETY: this was the last handle; the block came from the pool for this
                // class on this thread (`Shared` is not `Send`). The value is dropped
                // first: its drop may free other objects, into the same lists.
                unsafe {
                    ptr::drop_in_place(p);
                    crate::pool::give(p.cast(), Self::CLASS);
                }
            }
        } else {
            c.set(n);
        }
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner().value
    }
}

#[cfg(test)]
mod tests {
    use super::Shared;
    use std::cell::Cell;
    use std::ptr;
    use std::rc::Rc;

    struct CountDrops(Rc<Cell<usize>>);
    impl Drop for CountDrops {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn frees_once_after_the_last_handle() {
        let drops = Rc::new(Cell::new(0));
        let a = Shared::new(CountDrops(drops.clone()));
        let b = a.clone();
        let c = b.clone();
        assert!(Shared::ptr_eq(&a, &c));
        drop(a);
        drop(b);
        assert_eq!(drops.get(), 0);
        drop(c);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn into_unique_only_from_the_last_handle() {
        let drops = Rc::new(Cell::new(0));
        let a = Shared::new(CountDrops(drops.clone()));
        let b = a.clone();
        assert!(Shared::into_unique(a).is_none());
        assert_eq!(drops.get(), 0);
        let v = Shared::into_unique(b).map(|v| v.0.clone());
        // Moved out, not dropped: dropped once, here.
        assert_eq!(drops.get(), 1);
        assert!(v.is_some());
        let big = Shared::new([7u64; 16]);
        assert_eq!(Shared::into_unique(big), Some([7u64; 16]));
    }

    #[test]
    fn take_unique_only_from_the_last_handle() {
        let drops = Rc::new(Cell::new(0));
        let a = Shared::new((CountDrops(drops.clone()), 3u32));
        let b = a.clone();
        // SAFETY (both): the closure moves the one field that owns anything out.
        assert!(unsafe { Shared::take_unique(a, |p| ptr::read(&(*p).0)) }.is_none());
        assert_eq!(drops.get(), 0);
        let taken = unsafe { Shared::take_unique(b, |p| ptr::read(&(*p).0)) };
        // Moved out, not dropped with the block: dropped once, with `taken`.
        assert_eq!(drops.get(), 0);
        drop(taken);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn get_mut_only_from_the_only_handle() {
        let mut a = Shared::new(5u64);
        *Shared::get_mut(&mut a).unwrap() += 1;
        let b = a.clone();
        assert!(Shared::get_mut(&mut a).is_none());
        drop(b);
        assert_eq!(Shared::get_mut(&mut a).copied(), Some(6));
    }

    #[test]
    fn one_word_of_header() {
        assert_eq!(std::mem::size_of::<Shared<u64>>(), 8);
        assert_eq!(std::mem::size_of::<Option<Shared<u64>>>(), 8);
        assert_eq!(std::mem::size_of::<super::Inner<u64>>(), 16);
    }
}
