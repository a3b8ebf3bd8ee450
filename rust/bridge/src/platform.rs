//! The bridge's calls into the operating system, one function per difference
//! between platforms, each with its portable fallback. (CPython's C API has a module
//! of its own, `capi.rs`.)

use std::time::Duration;

/// The main thread's stack size: the soft `RLIMIT_STACK` (unlimited or unknown:
/// `None`). The one platform-specific lookup of the runtime.
#[cfg(unix)]
pub(crate) fn main_thread_stack() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the valid, exclusively borrowed
    // `limit` and has no other effect.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).ok())
        .flatten()
}

/// Windows gives the main thread 1 MiB unless the executable says otherwise; 8 MiB
/// is what the runtime's threads get there.
#[cfg(not(unix))]
pub(crate) fn main_thread_stack() -> Option<usize> {
    None
}

/// A monotonic clock for thresholds of milliseconds, read at every inline poll:
/// `CLOCK_MONOTONIC_COARSE` on Linux (a memory read in the vDSO, where the precise
/// clock can cost a system call on a virtual machine), elsewhere `Instant`.
#[cfg(target_os = "linux")]
pub(crate) fn coarse_now() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` into the valid, exclusively
    // borrowed `now`; CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn coarse_now() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}
