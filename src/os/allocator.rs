//! How the watcher's memory follows what it holds, not the largest run it ever made
//! (issue 8).
//!
//! glibc's malloc keeps what a program frees. Freeing a large block raises its mmap
//! threshold to that block and its trim threshold to twice it, so later large blocks come
//! from the heap and up to 64 MiB of free heap is never returned; `malloc_trim` returns
//! free pages inside every arena but not the free top of a thread's arena. A watcher whose
//! startup run planned 100,000 files stayed near 60 MiB for the rest of its life with
//! 15 MiB of it live. So the watcher fixes both thresholds once (fixing them turns the
//! raising off) and trims after each run.

/// Large blocks (a plan, a batch, the manifest's lists) get pages of their own, which go
/// back to the system when freed; the glibc default, kept from rising.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory at the top of a heap beyond this is returned as it is freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1024 * 1024;

/// Fixes the allocator's thresholds for a long-lived process; call once, early.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn settle_for_long_life() {
    // SAFETY: mallopt takes two integers and changes only malloc's own parameters, under
    // malloc's lock; an unknown value is refused with 0, which only keeps the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Returns the allocator's free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn give_back() {
    // SAFETY: malloc_trim takes no pointer and touches only the allocator's own lists,
    // under the same locks every malloc and free take (glibc documents it MT-Safe).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's, macOS's) return memory on their own or have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn settle_for_long_life() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}
