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

/// The loop's wake-up socket pair: workers write a byte to `tx`, the loop watches
/// `rx` with `loop.add_reader`. A Unix socket pair where there is one; elsewhere (and
/// on Unix when `IPY_RUSTASYNC_WAKEUP=tcp`, so the path Windows would take is tested
/// here) a connected pair of loopback TCP sockets, as Python's own
/// `socket.socketpair()` makes on Windows. Both ends are non-blocking.
pub(crate) struct WakePair {
    pub(crate) tx: WakeStream,
    pub(crate) rx: WakeStream,
}

/// One end of a [`WakePair`].
pub(crate) enum WakeStream {
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl WakePair {
    pub(crate) fn new() -> std::io::Result<WakePair> {
        #[cfg(unix)]
        if !loopback_forced() {
            let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
            tx.set_nonblocking(true)?;
            rx.set_nonblocking(true)?;
            return Ok(WakePair {
                tx: WakeStream::Unix(tx),
                rx: WakeStream::Unix(rx),
            });
        }
        let (tx, rx) = loopback_pair()?;
        Ok(WakePair {
            tx: WakeStream::Tcp(tx),
            rx: WakeStream::Tcp(rx),
        })
    }
}

/// Whether `IPY_RUSTASYNC_WAKEUP=tcp` asks for the loopback pair on Unix.
#[cfg(unix)]
fn loopback_forced() -> bool {
    std::env::var("IPY_RUSTASYNC_WAKEUP").is_ok_and(|v| v.trim().eq_ignore_ascii_case("tcp"))
}

/// Two connected TCP sockets on 127.0.0.1 (nothing else can connect: the listener
/// takes one connection and closes, and the pair is checked to be each other's).
fn loopback_pair() -> std::io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let tx = TcpStream::connect(listener.local_addr()?)?;
    let (rx, peer) = listener.accept()?;
    if peer != tx.local_addr()? {
        return Err(std::io::Error::other(
            "another process connected to the wake-up socket first",
        ));
    }
    // A wake-up is one byte: never held back to be coalesced.
    tx.set_nodelay(true)?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    Ok((tx, rx))
}

impl WakeStream {
    /// What `loop.add_reader` takes: the file descriptor (a socket handle on
    /// Windows).
    pub(crate) fn handle(&self) -> i64 {
        match self {
            #[cfg(unix)]
            WakeStream::Unix(stream) => i64::from(std::os::fd::AsRawFd::as_raw_fd(stream)),
            #[cfg(unix)]
            WakeStream::Tcp(stream) => i64::from(std::os::fd::AsRawFd::as_raw_fd(stream)),
            #[cfg(windows)]
            WakeStream::Tcp(stream) => {
                std::os::windows::io::AsRawSocket::as_raw_socket(stream) as i64
            }
            #[cfg(not(any(unix, windows)))]
            WakeStream::Tcp(_) => -1,
        }
    }

    pub(crate) fn write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        use std::io::Write;
        match self {
            #[cfg(unix)]
            WakeStream::Unix(stream) => (&*stream).write(bytes),
            WakeStream::Tcp(stream) => (&*stream).write(bytes),
        }
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Read;
        match self {
            #[cfg(unix)]
            WakeStream::Unix(stream) => (&*stream).read(buf),
            WakeStream::Tcp(stream) => (&*stream).read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair every platform but Unix uses, exercised here: a byte written to one
    /// end is read at the other, and an empty read end does not block.
    #[test]
    fn loopback_pair_carries_wake_ups_without_blocking() {
        let (tx, rx) = loopback_pair().expect("a loopback pair");
        let (tx, rx) = (WakeStream::Tcp(tx), WakeStream::Tcp(rx));
        let mut buf = [0u8; 8];
        assert_eq!(
            rx.read(&mut buf).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock)
        );
        assert_eq!(tx.write(&[1]).ok(), Some(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match rx.read(&mut buf) {
                Ok(1) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "the byte never came");
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => panic!("unexpected read: {other:?}"),
            }
        }
        assert!(rx.handle() >= 0);
    }
}
