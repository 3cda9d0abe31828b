//! Memory hints for the large arrays that graph building reads and writes at random.

/// Asks Linux to back `v`'s allocated capacity with transparent huge pages where it can.
///
/// An array of a few MiB read or written at random (the interner's table, the transpose's
/// scatter) would otherwise miss the TLB on nearly every access with 4 KiB pages, and
/// filling one takes a page fault every 4 KiB. On the 1M-node key build this took a
/// sixth off. Only effective on memory not yet touched, so call it right after
/// allocating; arrays under 2 MiB are left alone. Harmless where huge pages are off.
pub(crate) fn huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if last > first {
            // SAFETY: the range lies inside `v`'s allocation, which this process owns, and
            // MADV_HUGEPAGE changes only how the kernel backs it, never its contents. A
            // refusal (huge pages off) is harmless, so the result is ignored.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Starts loading the cache line holding `item`, so that a later read finds it there.
#[inline]
pub(crate) fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it has no architectural effect and never
    // faults, and SSE, which provides it, is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}
