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

/// mimalloc's `mi_option_allow_thp` (its header's option number; the bindings predate it).
const OPTION_ALLOW_THP: std::ffi::c_int = 43;
/// mimalloc's `mi_option_arena_eager_commit` (as above).
const OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// Commit arena memory as it is used rather than all at once. An eagerly committed arena is
/// also advised onto transparent huge pages, so the blocks allocated at startup (before
/// [`configure`] can advise otherwise) sat on two 2 MiB pages: 5 MB resident for
/// `nix-instantiate --eval -E 1` instead of 1.3 MB, and 3.5 MB more for a whole evaluation.
/// Committing on demand costs no measurable time (A/B on the package-set and module-system
/// benchmarks). This has to be set before mimalloc initialises, which its own constructor
/// does: this one runs first (a numbered `.init_array` entry runs before unnumbered ones),
/// and an option set before initialisation is kept. (`allow_thp` cannot be set here: at
/// initialisation mimalloc turns it into `PR_SET_THP_DISABLE`, which builders would inherit.)
#[used]
#[link_section = ".init_array.00101"]
static EARLY_OPTIONS: extern "C" fn() = early_options;

extern "C" fn early_options() {
    // SAFETY: setting an option only writes mimalloc's option table; no allocation yet.
    unsafe { mi_option_set(OPTION_ARENA_EAGER_COMMIT, 0) };
}

extern "C" {
    // Part of mimalloc's API (`mimalloc.h`), compiled in by libmimalloc-sys; its Rust
    // declaration sits behind a feature this crate does not need otherwise.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Keep mimalloc's heap on ordinary pages. mimalloc asks for transparent huge pages on its
/// arenas, where a 2 MiB page is committed whole for the first small object placed in it: an
/// evaluation's resident memory was a third larger for it (87 MB instead of 66 MB for the
/// 2000-package benchmark, at the same speed). The price is more page faults on a heap that
/// fills its pages anyway (`foldl'` over a million elements: about a tenth slower).
///
/// The first arena is mapped before `main` runs, so the option alone comes too late for it:
/// its mapping (found in /proc/self/maps from the address of a fresh block) is advised
/// against huge pages directly. Process-wide switches (`PR_SET_THP_DISABLE`) are avoided
/// because builders would inherit them. Called (once) by the commands that evaluate, before
/// the evaluator's heap grows, and by garbage collections, which build their graph at once:
/// there each huge page was cleared for a few blocks (a collection of 10,000 paths spent
/// 6-28% of its time in `clear_page`, and its resident memory was 39 MB instead of 18 MB).
/// The others do not pay for reading the mappings.
pub fn configure() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(keep_off_huge_pages);
}

fn keep_off_huge_pages() {
    // SAFETY: setting an option is allowed at any time; it affects later OS allocations.
    unsafe { mi_option_set(OPTION_ALLOW_THP, 0) };
    let probe = Box::new(0u64);
    let addr = &*probe as *const u64 as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    // The mapping that holds the probe, widened over the anonymous mappings next to it: an
    // arena committed on demand is a run of them (committed parts and reserved ones), and
    // other threads commit more while the list is read (so lines of one read may overlap).
    let mut anon: Vec<(usize, usize)> = maps
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            // Anonymous: no file name after the five fixed fields.
            if fields.nth(4).is_some() {
                return None;
            }
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect();
    anon.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (s, e) in anon {
        match runs.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => runs.push((s, e)),
        }
    }
    let range = runs.into_iter().find(|&(s, e)| s <= addr && addr < e);
    if let Some((start, end)) = range {
        // SAFETY: advice on a mapping of this process; it changes no contents. Failure
        // leaves the default, which is only a matter of memory use.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_NOHUGEPAGE,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    /// The kernel's flags for the mapping that holds `addr` (`VmFlags` in /proc/self/smaps).
    fn vm_flags(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for l in smaps.lines() {
            if let Some((range, _)) = l.split_once(' ') {
                if let Some((s, e)) = range.split_once('-') {
                    if let (Ok(s), Ok(e)) =
                        (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16))
                    {
                        inside = s <= addr && addr < e;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(f) = l.strip_prefix("VmFlags:") {
                    return Some(f.trim().to_string());
                }
            }
        }
        None
    }

    #[test]
    fn the_heap_is_kept_off_huge_pages() {
        super::configure();
        let b = Box::new([0u8; 64]);
        let flags = vm_flags(b.as_ptr() as usize).expect("the heap's mapping is listed");
        assert!(
            flags.split_whitespace().any(|f| f == "nh"),
            "heap mapping flags: {flags}"
        );
    }
}
