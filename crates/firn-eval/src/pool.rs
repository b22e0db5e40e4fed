//! Per-thread pools of fixed-size blocks for [`crate::shared::Shared`] objects (thunks and
//! scopes, the evaluator's most numerous and shortest-lived allocations).
//!
//! A freed block goes on its size's free list and is the next one handed out: taking and
//! giving back a block is a few instructions, against a general allocator's size-class
//! lookup and page bookkeeping on each call. Blocks are carved from chunks that are never
//! returned; a pool only ever holds as many blocks as were alive at once (they are reused,
//! not accumulated), which is the evaluation's own peak.
//!
//! The lists are per thread. The objects in them are `!Send` (so a block is given back on
//! the thread that took it), and a thread that ends leaves its chunks allocated but unused,
//! never dangling.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr;

/// A free block's first word: the next free block.
struct Free {
    next: *mut Free,
}

/// Bytes of blocks carved at once.
const CHUNK: usize = 64 << 10;

/// The block sizes pooled; larger objects go to the general allocator.
pub const SMALL: usize = 32;
pub const LARGE: usize = 48;

thread_local! {
    static SMALL_FREE: Cell<*mut Free> = const { Cell::new(ptr::null_mut()) };
    static LARGE_FREE: Cell<*mut Free> = const { Cell::new(ptr::null_mut()) };
}

/// Which pool serves `layout`, if any: objects of at most 48 bytes with an alignment of at
/// most 16 (decided at compile time for each type).
#[inline(always)]
pub const fn class(layout: Layout) -> usize {
    if layout.align() > 16 || layout.size() == 0 {
        0
    } else if layout.size() <= SMALL {
        SMALL
    } else if layout.size() <= LARGE {
        LARGE
    } else {
        0
    }
}

/// A block of `size` bytes (a [`class`]), aligned to 16.
#[inline(always)]
pub fn take(size: usize) -> *mut u8 {
    let list = if size == SMALL {
        &SMALL_FREE
    } else {
        &LARGE_FREE
    };
    list.with(|head| {
        let b = head.get();
        if b.is_null() {
            return refill(head, size);
        }
        // SAFETY: `b` is a free block of this list (see `give`), so its first word is the
        // next free block.
        head.set(unsafe { (*b).next });
        b.cast()
    })
}

/// Give back a block [`take`] returned for the same `size`.
///
/// # Safety
/// `b` came from `take(size)` on this thread and is no longer used.
#[inline(always)]
pub unsafe fn give(b: *mut u8, size: usize) {
    let list = if size == SMALL {
        &SMALL_FREE
    } else {
        &LARGE_FREE
    };
    list.with(|head| {
        let f = b.cast::<Free>();
        // SAFETY: the caller gives up the block, which is at least a word and aligned.
        unsafe { f.write(Free { next: head.get() }) };
        head.set(f);
    })
}

/// Carve a new chunk into blocks: returns one, the rest go on the list.
#[cold]
#[inline(never)]
fn refill(head: &Cell<*mut Free>, size: usize) -> *mut u8 {
    let layout = match Layout::from_size_align(CHUNK, 16) {
        Ok(l) => l,
        Err(_) => std::process::abort(),
    };
    // SAFETY: the layout has a non-zero size.
    let chunk = unsafe { std::alloc::alloc(layout) };
    if chunk.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    populate(chunk, CHUNK);
    let n = CHUNK / size;
    // Link blocks 1..n in address order; block 0 is handed out.
    let mut next = head.get();
    for i in (1..n).rev() {
        // SAFETY: `i * size + size <= CHUNK`, inside the chunk, 16-aligned (size is).
        let f = unsafe { chunk.add(i * size) }.cast::<Free>();
        unsafe { f.write(Free { next }) };
        next = f;
    }
    head.set(next);
    chunk
}

/// Have the kernel back `len` bytes at `p` with memory now, in one call, rather than page by
/// page as they are first written (each a fault, costly in a virtual machine); the chunk is
/// written whole at once anyway. Where the kernel lacks `MADV_POPULATE_WRITE` (before Linux
/// 5.14) this does nothing and the pages come as they are touched.
fn populate(p: *mut u8, len: usize) {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    let page = 4096;
    let start = (p as usize).next_multiple_of(page);
    let end = (p as usize + len) & !(page - 1);
    if end > start {
        // SAFETY: advice on whole pages inside a block this thread owns; it changes no
        // contents (they are zero or already ours) and failure is harmless.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class(Layout::new::<[u64; 4]>()), SMALL);
        assert_eq!(class(Layout::new::<[u64; 5]>()), LARGE);
        assert_eq!(class(Layout::new::<[u64; 6]>()), LARGE);
        assert_eq!(class(Layout::new::<[u64; 7]>()), 0);
        assert_eq!(class(Layout::new::<()>()), 0);
    }

    #[test]
    fn blocks_are_distinct_aligned_and_reused() {
        for size in [SMALL, LARGE] {
            let blocks: Vec<*mut u8> = (0..5000).map(|_| take(size)).collect();
            let mut sorted = blocks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), blocks.len(), "a block handed out twice");
            for w in sorted.windows(2) {
                assert!(w[1] as usize - w[0] as usize >= size, "blocks overlap");
            }
            for b in &blocks {
                assert_eq!(*b as usize % 16, 0);
                // Every byte of a block is usable.
                unsafe { ptr::write_bytes(*b, 0xa5, size) };
            }
            let last = blocks[blocks.len() - 1];
            for b in &blocks {
                unsafe { give(*b, size) };
            }
            // The last block given back is the first taken again.
            assert_eq!(take(size), last);
            unsafe { give(last, size) };
        }
    }
}
