//! A global allocator that treats an absurd request as a finding.
//!
//! An allocation that fails aborts a Rust process, so a target that asks for terabytes because
//! of a mutated size field would end a campaign with no trace of the input. [`LimitAlloc`]
//! (installed by the `klpforge-fuzz` binary) passes requests to the system allocator, except
//! those above [`set_limit`]'s bound: for those the handler of [`set_oversized_handler`] (the
//! harness) saves the in-flight input as a crash, prints a backtrace and aborts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static ON_OVERSIZED: OnceLock<fn(usize) -> !> = OnceLock::new();

/// What to do with a request above the bound (the harness saves the in-flight input); without
/// a handler the process aborts.
pub fn set_oversized_handler(handler: fn(usize) -> !) {
    let _ = ON_OVERSIZED.set(handler);
}

/// The system allocator with a bound on the size of one request.
pub struct LimitAlloc;

/// Set the largest single allocation, in bytes (no bound until this is called).
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// The current bound.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

#[inline]
fn check(size: usize) {
    if size > LIMIT.load(Ordering::Relaxed) {
        match ON_OVERSIZED.get() {
            Some(handler) => handler(size),
            None => std::process::abort(),
        }
    }
}

// SAFETY: every request is forwarded unchanged to `System`; the check before it never
// returns when it fails (it aborts the process).
unsafe impl GlobalAlloc for LimitAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract is `GlobalAlloc::alloc`'s, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as for `dealloc`, with `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
