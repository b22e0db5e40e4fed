//! The global allocator: mimalloc. The evaluator allocates and frees many small objects,
//! where glibc's allocator costs a quarter of the run time.
//!
//! The `mimalloc` crate's allocator asks for every block with its alignment
//! (`mi_malloc_aligned`), which takes a slower path inside mimalloc; nearly all of firn's
//! blocks need only the 8 bytes every mimalloc block has, so those go to `mi_malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every mimalloc block has, whatever its size.
const MIN_ALIGN: usize = 8;

pub struct Mimalloc;

// SAFETY: each method forwards to mimalloc's functions of the same contract; blocks from
// `mi_malloc` and `mi_malloc_aligned` are both freed by `mi_free` and resized by
// `mi_realloc(_aligned)`.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}
