//! Printing from a cell: what `print!`, `println!`, `eprint!`, `eprintln!` and `dbg!`
//! write goes to Python's `sys.stdout` / `sys.stderr`, in the order it was written.
//!
//! Rust's own macros write to file descriptors 1 and 2, which a Jupyter kernel reads
//! on a thread of its own and forwards later than Python's `print` (and which
//! `contextlib.redirect_stdout` never sees). The exporter shadows those macros in
//! the cell's module (`rust/macros/src/printing.rs`); each formats its text once and
//! hands it whole to [`print`], so one call is never split:
//!
//! * on a thread attached to Python (holding the GIL: the loop's thread, a sync
//!   call, an inline poll) the text is written at once to `sys.stdout` or
//!   `sys.stderr`, looked up at each call, after whatever was queued before it;
//! * on any other thread (tokio workers, `spawn_blocking` threads, threads the cell
//!   started) the caller never waits for the GIL (a worker waiting for it while the
//!   GIL's holder waits for that worker would hang): the text joins one ordered
//!   queue and a writer thread is woken.
//!
//! The queue is drained, holding the GIL, by whoever gets there first: the loop's
//! thread before it delivers what workers finished (`channel.rs`: a future that
//! completed after its worker printed has its text written before its result
//! reaches Python), `ipy_rustasync.run` and sync calls before they return to Python
//! (`blocking.rs`, `panics::call_sync`), an attached writer before its own text,
//! and the writer thread otherwise (text from a task that outlives its cell, or
//! written while no loop runs). One drain writes at a time, so the queue's order
//! survives a Python `write` that lets another thread run mid-way. At interpreter
//! exit the writer thread is stopped and the queue drained once more; text written
//! after that goes to the file descriptors.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyString, PyTuple};

use crate::capi::{holds_gil, run_in_context, RanIn};
use crate::sync::{hold_for_fork, lock, reclaim_in_child, release_after_fork, ForkSlot};

/// Which stream a text goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// `sys.stdout` (`print!`, `println!`).
    Out,
    /// `sys.stderr` (`eprint!`, `eprintln!`, `dbg!`).
    Err,
}

impl Stream {
    fn sys_name(self) -> &'static str {
        match self {
            Stream::Out => "stdout",
            Stream::Err => "stderr",
        }
    }
}

/// Text written by threads not attached to Python, waiting for a drain.
struct Queue {
    chunks: VecDeque<(Stream, String)>,
    /// Whether a drain is writing (it may let other threads run mid-way, inside a
    /// Python `write`; another drain waits for it, with the GIL released).
    draining: bool,
    /// Whether the writer thread runs.
    writer: bool,
    /// Set at interpreter exit: no writer thread any more, and text from threads
    /// not attached goes straight to the file descriptors.
    closed: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    chunks: VecDeque::new(),
    draining: false,
    writer: false,
    closed: false,
});
/// Chunks queued and not yet written (a drain counts a chunk down once it is
/// written): zero means a drain has nothing to wait for, read without the lock.
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// Wakes the writer thread (text queued, or the interpreter exits).
static WAKE: Condvar = Condvar::new();
/// Signalled when a drain ends and when the writer thread stops.
static DONE: Condvar = Condvar::new();

/// How long the writer thread waits for more text before it stops (the next text
/// from a thread not attached starts a new one).
const WRITER_IDLE: Duration = Duration::from_secs(2);
/// How long the interpreter's exit waits for the writer thread to stop.
const EXIT_WAIT: Duration = Duration::from_secs(2);

thread_local! {
    /// Whether this thread is inside a drain: a `write` that prints from Rust again
    /// (a Python stream calling a cell function) writes at once, not into a second
    /// drain that would wait for the first forever.
    static IN_DRAIN: Cell<bool> = const { Cell::new(false) };
}

/// What the cell's printing macros call: `args` (and a newline if `newline`) to
/// `stream`, as one text. Never panics and never blocks on the GIL.
pub fn print(stream: Stream, args: fmt::Arguments<'_>, newline: bool) {
    let mut text = match args.as_str() {
        Some(text) => text.to_owned(),
        None => {
            let mut text = String::new();
            // A `Display` impl that returns an error: what was formatted is kept
            // (std's `print!` would panic).
            let _ = fmt::write(&mut text, args);
            text
        }
    };
    if newline {
        text.push('\n');
    }
    if text.is_empty() {
        return;
    }
    if holds_gil() {
        // Attached already, so this does not wait; `None` while the interpreter
        // finalizes, when Python objects are no longer safe to use.
        let written = Python::try_attach(|py| {
            drain(py);
            write_now(py, stream, &text, None);
        });
        if written.is_none() {
            write_fd(stream, &text);
        }
    } else {
        enqueue(stream, text);
    }
}

/// Queues `text` for a drain and makes sure the writer thread will see it.
fn enqueue(stream: Stream, text: String) {
    let mut queue = lock(&QUEUE);
    if queue.closed {
        drop(queue);
        write_fd(stream, &text);
        return;
    }
    queue.chunks.push_back((stream, text));
    PENDING.fetch_add(1, Ordering::SeqCst);
    if queue.writer {
        WAKE.notify_one();
        return;
    }
    queue.writer = true;
    drop(queue);
    let spawned = std::thread::Builder::new()
        .name("ipy-rustasync-output".into())
        .spawn(writer);
    if spawned.is_err() {
        // No thread to be had: the text waits for the next drain (a delivery, a
        // sync call's return, the interpreter's exit).
        lock(&QUEUE).writer = false;
    }
}

/// Whether text is queued (a cheap look before attaching to drain it).
pub(crate) fn pending() -> bool {
    PENDING.load(Ordering::SeqCst) != 0
}

/// Writes everything queued, in order, before returning. Called holding the GIL;
/// waits (with the GIL released) for a drain running on another thread.
pub(crate) fn drain(py: Python<'_>) {
    if PENDING.load(Ordering::SeqCst) == 0 || IN_DRAIN.with(Cell::get) {
        return;
    }
    let _turn = DrainTurn::take(py);
    // Queued text comes from threads with no Python context, so it is written in
    // an empty one, as a Python thread's would be: not in the context of whatever
    // loop callback drains it (the loop's reader callback keeps the context of the
    // cell that first awaited on it, where ipykernel would find that cell's
    // header and show the text under it).
    let context = py
        .import("contextvars")
        .and_then(|contextvars| contextvars.getattr("Context")?.call0())
        .ok();
    loop {
        let chunks = std::mem::take(&mut lock(&QUEUE).chunks);
        if chunks.is_empty() {
            return;
        }
        for (stream, text, count) in merged(chunks) {
            write_now(py, stream, &text, context.as_ref());
            PENDING.fetch_sub(count, Ordering::SeqCst);
        }
    }
}

/// The one drain writing, on this thread, until dropped.
struct DrainTurn;

impl DrainTurn {
    fn take(py: Python<'_>) -> Self {
        let free = {
            let mut queue = lock(&QUEUE);
            !std::mem::replace(&mut queue.draining, true)
        };
        if !free {
            // The drain writing now may need the GIL to finish: wait without it.
            py.detach(|| {
                let mut queue = lock(&QUEUE);
                while queue.draining {
                    queue = wait(&DONE, queue);
                }
                queue.draining = true;
            });
        }
        IN_DRAIN.with(|in_drain| in_drain.set(true));
        DrainTurn
    }
}

impl Drop for DrainTurn {
    fn drop(&mut self) {
        IN_DRAIN.with(|in_drain| in_drain.set(false));
        lock(&QUEUE).draining = false;
        DONE.notify_all();
    }
}

fn wait<'a>(condvar: &Condvar, guard: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Consecutive chunks for the same stream joined into one write, each with the
/// number of chunks it holds.
fn merged(chunks: VecDeque<(Stream, String)>) -> Vec<(Stream, String, usize)> {
    let mut out: Vec<(Stream, String, usize)> = Vec::new();
    for (stream, text) in chunks {
        match out.last_mut() {
            Some((last, joined, count)) if *last == stream => {
                joined.push_str(&text);
                *count += 1;
            }
            _ => out.push((stream, text, 1)),
        }
    }
    out
}

/// Writes `text` to `sys.stdout` or `sys.stderr` as they are now (a
/// `contextlib.redirect_stdout`, ipykernel's stream). Where there is no such stream
/// (`None`: late in the interpreter's finalization, under `pythonw`) or writing
/// fails (a closed stream, an exception already set that a call would trample), it
/// goes to the file descriptor instead, where Rust's own macros would have written
/// it (Python's `print` would drop it, or raise: neither helps here).
/// In `context` if given (and not entered already), else in the current one.
fn write_now(py: Python<'_>, stream: Stream, text: &str, context: Option<&Bound<'_, PyAny>>) {
    if PyErr::occurred(py) {
        write_fd(stream, text);
        return;
    }
    let written = py
        .import("sys")
        .and_then(|sys| sys.getattr(stream.sys_name()))
        .and_then(|file| {
            if file.is_none() {
                return Err(pyo3::exceptions::PyValueError::new_err("no stream"));
            }
            let write = file.getattr("write")?;
            let text = PyString::new(py, text);
            if let Some(context) = context {
                if let RanIn::Ran(result) = run_in_context(context, &write, &text) {
                    return result.map(drop);
                }
            }
            write.call1((text,)).map(drop)
        });
    if let Err(err) = written {
        if err.is_instance_of::<PyKeyboardInterrupt>(py) {
            // Ctrl-C landed in the stream's Python code: raise it again at the
            // next chance, rather than lose it here.
            let _ = py
                .import("_thread")
                .and_then(|thread| thread.call_method0("interrupt_main"));
        }
        write_fd(stream, text);
    }
}

/// The fallback: the process's file descriptor 1 or 2, flushed at once. Errors are
/// ignored (there is nowhere left to report them).
fn write_fd(stream: Stream, text: &str) {
    let _ = match stream {
        Stream::Out => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
        Stream::Err => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

/// The writer thread: drains the queue as text arrives; stops after
/// [`WRITER_IDLE`] without any, and at the interpreter's exit.
fn writer() {
    loop {
        {
            let mut queue = lock(&QUEUE);
            while queue.chunks.is_empty() && !queue.closed {
                let (next, waited) = WAKE
                    .wait_timeout(queue, WRITER_IDLE)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                queue = next;
                if waited.timed_out() && queue.chunks.is_empty() {
                    queue.writer = false;
                    return;
                }
            }
            if queue.closed {
                queue.writer = false;
                drop(queue);
                DONE.notify_all();
                return;
            }
        }
        // Waits for the GIL. `None`: the interpreter is finalizing (its exit
        // hook, which stops this thread first, did not run).
        if Python::try_attach(drain).is_none() {
            let chunks = {
                let mut queue = lock(&QUEUE);
                queue.closed = true;
                queue.writer = false;
                std::mem::take(&mut queue.chunks)
            };
            for (stream, text) in chunks {
                write_fd(stream, &text);
                PENDING.fetch_sub(1, Ordering::SeqCst);
            }
            DONE.notify_all();
            return;
        }
    }
}

/// At the interpreter's exit (an `atexit` hook, so before it finalizes): stops the
/// writer thread, which must not be waiting for the GIL once the interpreter
/// finalizes (a thread that takes it then is ended on the spot), and drains what
/// is left while `sys.stdout` still works.
fn at_exit(py: Python<'_>) {
    lock(&QUEUE).closed = true;
    WAKE.notify_all();
    py.detach(|| {
        let queue = lock(&QUEUE);
        let _ = DONE.wait_timeout_while(queue, EXIT_WAIT, |queue| queue.writer);
    });
    drain(py);
}

thread_local! {
    /// The queue's lock, held by a thread that calls `os.fork()` from just before
    /// the fork to just after it, as the runtime's is (`runtime.rs`): the child
    /// gets the queue in a state no thread was halfway through changing.
    static FORK_GUARD: ForkSlot<Queue> = const { std::cell::RefCell::new(None) };
}

fn before_fork() {
    hold_for_fork(&QUEUE, &FORK_GUARD);
}

fn after_fork_in_parent() {
    release_after_fork(&FORK_GUARD);
}

/// `os.fork()` copies the queue but not the writer thread, nor a drain running on
/// another thread: the child starts empty (the parent writes what was queued).
fn after_fork_in_child() {
    let Some(mut queue) = reclaim_in_child(&QUEUE, &FORK_GUARD) else {
        return;
    };
    queue.chunks.clear();
    queue.draining = false;
    queue.writer = false;
    PENDING.store(0, Ordering::SeqCst);
    IN_DRAIN.with(|in_drain| in_drain.set(false));
}

/// Registers the exit and fork hooks, once per cell library (a multi-cell export
/// initialises several cells in one library).
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if REGISTERED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let hook = |run: fn(Python<'_>)| {
        PyCFunction::new_closure(
            py,
            None,
            None,
            move |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| run(args.py()),
        )
    };
    py.import("atexit")?
        .call_method1("register", (hook(at_exit)?,))?;
    let os = py.import("os")?;
    if os.hasattr("register_at_fork")? {
        let kwargs = PyDict::new(py);
        kwargs.set_item("before", hook(|_| before_fork())?)?;
        kwargs.set_item("after_in_parent", hook(|_| after_fork_in_parent())?)?;
        kwargs.set_item("after_in_child", hook(|_| after_fork_in_child())?)?;
        os.call_method("register_at_fork", (), Some(&kwargs))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_chunks_of_one_stream_become_one_write() {
        let chunks: VecDeque<(Stream, String)> = [
            (Stream::Out, "a"),
            (Stream::Out, "b\n"),
            (Stream::Err, "e"),
            (Stream::Out, "c"),
            (Stream::Out, ""),
        ]
        .into_iter()
        .map(|(stream, text)| (stream, text.to_owned()))
        .collect();
        assert_eq!(
            merged(chunks),
            vec![
                (Stream::Out, "ab\n".to_owned(), 2),
                (Stream::Err, "e".to_owned(), 1),
                (Stream::Out, "c".to_owned(), 2),
            ]
        );
    }
}
