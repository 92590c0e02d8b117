//! The global allocator, and the one place in Parapet with `unsafe`.
//!
//! mimalloc instead of glibc's allocator. Measured (bench/README.md, memory
//! section): after a burst of 10,000 registrations the live heap is ~11 MB,
//! but glibc kept the burst's peak (transactions held for timer J) in
//! fragmented arenas: 46 MB resident in steady state, against 27 MB with
//! mimalloc (and 33 MB with jemalloc), with the same code.
//!
//! [`tune`] sets mimalloc v3's purge delay to 0 (default 1 s, 10 s for
//! arenas): freed memory goes back to the OS at once instead of staying
//! resident in idle threads' heaps. Measured with bench/run.sh (ONLY=parapet,
//! 10,000 users, same build): steady-state PSS 29.9 MB with the default
//! against 24.7 MB with the delay at 0, and CPU per REGISTER 120 µs against
//! 116.5 µs, per MESSAGE 58 against 51 (within the machine's noise): no cost
//! measured. The bulk of the difference is transient: an administrator's
//! sign-in (Argon2id takes 19 MiB) and a 10,000-user import through the API.
//! The option has no safe binding, hence the single `unsafe` call below.
#![deny(unsafe_code)]

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, the
/// same in mimalloc v2 and v3; libmimalloc-sys names the v2 list only).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The allocator to install with `#[global_allocator]`.
pub type Allocator = mimalloc::MiMalloc;

/// Applies the tuning above, unless the operator set `MIMALLOC_PURGE_DELAY`
/// (mimalloc reads its own environment variables at start).
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set only stores a value in mimalloc's option table
    // (an atomic store); any option index and value are accepted.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}
