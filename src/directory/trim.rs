//! Giving the allocator's free memory back to the system after the directory's start-up load.
//! Loading 100k cards allocates and frees rows, JSON and analyzed words by the gigabyte in
//! small pieces; glibc keeps the freed pages of its arenas (one per loading thread) resident,
//! so without a trim the process would carry the load's peak for its whole life.

/// Returns the allocator's free pages to the system (glibc's `malloc_trim(0)`); elsewhere a
/// no-op.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks glibc's own arenas under their locks; it takes no
    // pointer of ours and may be called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
