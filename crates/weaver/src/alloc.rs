//! The binary's allocator: jemalloc, configured to hand freed memory back to the OS.
//!
//! Why: with glibc malloc, the memory of unloaded rooms stayed in the process (3.5–4.5× the
//! starting RSS after 1000 rooms unloaded, docs/benchmarks.md); glibc keeps freed small chunks
//! in its arenas and trimming tunables did not help. jemalloc with a background purging thread
//! and a short decay returns it within seconds, without the application asking.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this symbol (the `_rjem_` prefix is the crate's default on every platform
/// we build for) before `main`; the `_RJEM_MALLOC_CONF` environment variable still overrides
/// it at run time. `background_thread` purges while the server sleeps (without it, purging
/// only happens inside later allocations, i.e. never once the rooms are gone);
/// `dirty_decay_ms:1000` returns freed pages after ~1 s instead of 10 s; `muzzy_decay_ms:0`
/// skips the lazily-freed middle state, whose pages still count in RSS.
// The one unsafe item of the workspace: exporting a symbol is unsafe because nothing checks
// its type against the C declaration (`const char *`). A reference to a NUL-terminated byte
// array is exactly one pointer to the first byte.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[cfg(test)]
mod tests {
    /// Fails if jemalloc ignored the embedded configuration (a symbol renamed by a feature
    /// change, e.g. `unprefixed_malloc_on_supported_platforms`, would be silently skipped).
    #[test]
    fn the_embedded_configuration_is_in_effect() {
        // Allocate so jemalloc is initialised, whatever the test harness did before.
        let v = vec![1u8; 1 << 20];
        assert_eq!(v.len(), 1 << 20);
        assert_eq!(tikv_jemalloc_ctl::opt::background_thread::read(), Ok(true));
        assert_eq!(tikv_jemalloc_ctl::background_thread::read(), Ok(true));
    }
}
