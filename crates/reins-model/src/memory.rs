//! Keeping freed memory for the next step instead of handing it back to the kernel.
//!
//! A training step allocates and frees the same large tensors every time (activations,
//! gradients, logits). With glibc's defaults a block above the mmap threshold (128 KiB at
//! first, raised as such blocks are freed) is its own `mmap`, returned to the kernel when freed,
//! and the top of the heap is trimmed above 128 KiB free: the next step faults every page in
//! again and the kernel zeroes each one. In a DPO step of the benchmark shape that was ≈ 17,000
//! page faults (≈ 68 MiB of fresh pages) a step. [`keep_freed_memory`] raises the mmap
//! threshold to glibc's maximum (32 MiB) and turns trimming off, so freed blocks stay in
//! the heap and the next step reuses them (measured in docs/speed.md). The process's resident
//! memory then stays at its peak instead of shrinking between steps; the peak itself is the
//! same.
//!
//! The `reins` binary calls it for its compute commands (not for the servers, whose memory
//! should shrink when idle); a program that uses the library may call it before its loop.

/// Tunes glibc's allocator to keep freed memory (see the module docs). A no-op on other C
/// libraries and systems. `REINS_KEEP_FREED_MEMORY=0` leaves the allocator as it is.
pub fn keep_freed_memory() {
    if std::env::var("REINS_KEEP_FREED_MEMORY").is_ok_and(|v| v == "0") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; glibc serialises it with allocation.
    unsafe {
        // glibc's largest accepted mmap threshold on 64-bit (HEAP_MAX_SIZE / 2); setting it
        // also stops glibc from moving it.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // Never trim the heap's free top (`c_int::MAX` bytes is "never" for a step's needs).
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        // Grow the heap by 64 MiB more than asked, so that it grows rarely.
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
