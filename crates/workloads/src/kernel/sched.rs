//! Context switches: `sched.ctxswitch.same`, `sched.ctxswitch.cross` and
//! `sched.ctxswitch.unix`.
//!
//! Two processes (the caller and a forked partner) pass one byte back and forth over two pipes
//! (`.unix`: over two Unix stream sockets, the channel of a database client and its server).
//! Each process blocks in `read` until the other writes, so on one CPU every hand-over is a
//! context switch between two address spaces; a round trip is two switches. Pinned to two
//! CPUs, each hand-over is instead a cross-CPU wake-up of a sleeping process.
//!
//! Parameter `pages` (default 0): after each hand-over the process that wakes reads one word
//! of each of that many distinct pages of its memory (written before the measured interval,
//! so present), as a database backend touches its buffers after each message. On the host a
//! switch that keeps the pages mapped costs that many TLB misses at most; a guest whose switch
//! between processes loses the mappings (User-Mode Linux runs each guest process as a host
//! process whose pages it maps in itself) pays for it here, and with `pages=0` not at all.

use std::os::fd::AsRawFd;
use std::time::Instant;

use super::os;
use crate::{Outcome, Params, WorkloadError};

/// The byte that tells the partner to exit.
const QUIT: u8 = b'q';
const PING: u8 = b'p';

pub(super) fn ctxswitch_same(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    ctxswitch(false, Channel::Pipe, pages(params)?, iterations)
}

pub(super) fn ctxswitch_cross(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    ctxswitch(true, Channel::Pipe, pages(params)?, iterations)
}

pub(super) fn ctxswitch_unix(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    ctxswitch(false, Channel::Unix, pages(params)?, iterations)
}

/// Most pages a side reads after each hand-over (256 MiB).
const MAX_PAGES: u64 = 65536;

fn pages(params: &Params) -> Result<usize, WorkloadError> {
    let n = crate::param_u64(params, "pages", 0)?;
    if n > MAX_PAGES {
        return Err(WorkloadError::BadParam(format!(
            "pages must be at most {MAX_PAGES}, got {n}"
        )));
    }
    Ok(n as usize)
}

/// Memory the woken process reads a word of per page: written before the fork, so present in
/// both processes (the partner's copy shares the pages until one writes, and neither does).
struct Touched {
    buf: Vec<u64>,
}

impl Touched {
    const WORDS_PER_PAGE: usize = 4096 / std::mem::size_of::<u64>();

    fn new(pages: usize) -> Touched {
        Touched {
            buf: vec![1u64; pages * Self::WORDS_PER_PAGE],
        }
    }

    /// The buffer's address and length in words: a raw view the forked partner can read
    /// without touching the parent's `Vec`.
    fn view(&self) -> (usize, usize) {
        (self.buf.as_ptr() as usize, self.buf.len())
    }
}

/// Reads one word per page of `(addr, len)`, a view from [`Touched::view`].
fn touch((addr, len): (usize, usize)) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < len {
        // SAFETY: `addr` is a live `Vec<u64>` of `len` words (the parent's, or the partner's
        // copy of it made by fork), and `i < len`.
        sum = sum.wrapping_add(unsafe { std::ptr::read_volatile((addr as *const u64).add(i)) });
        i += Touched::WORDS_PER_PAGE;
    }
    sum
}

/// What the two processes pass their byte through: each direction is a pipe, or one of a pair
/// of connected Unix stream sockets (used one way, as the pipe).
#[derive(Clone, Copy)]
enum Channel {
    Pipe,
    Unix,
}

impl Channel {
    /// One direction: (the end that is read, the end that is written).
    fn open(self) -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), WorkloadError> {
        match self {
            Channel::Pipe => os::pipe(),
            Channel::Unix => os::socketpair(),
        }
    }
}

/// One iteration is one round trip (two switches); the work is counted in switches.
fn ctxswitch(
    cross: bool,
    channel: Channel,
    pages: usize,
    iterations: u64,
) -> Result<Outcome, WorkloadError> {
    let cpus = os::allowed_cpus()?;
    let (mine, partners) = match (cross, cpus.as_slice()) {
        (_, []) => return Err(WorkloadError::Failed("the affinity mask is empty".into())),
        (false, [a, ..]) => (*a, *a),
        (true, [a, b, ..]) => (*a, *b),
        (true, [_]) => return Err(WorkloadError::Unsupported(one_cpu_reason())),
    };

    // Pin this thread first, so the partner is born on the same CPU; restore it at the end.
    let _restore = os::AffinityGuard::save()?;
    os::pin(0, mine)?;

    let (to_child_r, to_child_w) = channel.open()?;
    let (to_parent_r, to_parent_w) = channel.open()?;
    let fds = [
        to_child_r.as_raw_fd(),
        to_child_w.as_raw_fd(),
        to_parent_r.as_raw_fd(),
        to_parent_w.as_raw_fd(),
    ];
    let touched = Touched::new(pages);
    let view = touched.view();
    let mut child = os::fork_child(move || partner(fds, view))?;
    drop(to_child_r);
    drop(to_parent_w);
    if cross {
        os::pin(child.pid(), partners)?;
    }

    let (tx, rx) = (to_child_w.as_raw_fd(), to_parent_r.as_raw_fd());
    // One untimed round trip: the partner is running, pinned and has its pipes in cache.
    round_trip(tx, rx)?;
    std::hint::black_box(touch(view));
    let start = Instant::now();
    for _ in 0..iterations {
        round_trip(tx, rx)?;
        std::hint::black_box(touch(view));
    }
    let elapsed = start.elapsed();
    drop(touched);

    send(tx, QUIT)?;
    child.wait_success("the context-switch partner")?;
    Ok(Outcome::new(2.0 * iterations as f64, elapsed))
}

fn one_cpu_reason() -> String {
    // SAFETY: sysconf has no memory-safety preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online >= 2 {
        format!("needs 2 CPUs, the affinity mask allows 1 of the {online} online")
    } else {
        "needs 2 CPUs, this system has 1".into()
    }
}

fn send(fd: libc::c_int, byte: u8) -> Result<(), WorkloadError> {
    loop {
        // SAFETY: `byte` is one readable byte; `fd` is an open pipe end.
        let n = unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        if n == 1 {
            return Ok(());
        }
        if n < 0 && os::errno() == libc::EINTR {
            continue;
        }
        return Err(WorkloadError::os("writing to the context-switch partner"));
    }
}

fn round_trip(tx: libc::c_int, rx: libc::c_int) -> Result<(), WorkloadError> {
    send(tx, PING)?;
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is one writable byte; `rx` is an open pipe end.
        let n = unsafe { libc::read(rx, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 && byte == PING {
            return Ok(());
        }
        if n < 0 && os::errno() == libc::EINTR {
            continue;
        }
        return Err(match n {
            0 => WorkloadError::Failed("the context-switch partner died".into()),
            1 => WorkloadError::Failed(format!("the partner answered {byte:#x}")),
            _ => WorkloadError::os("reading from the context-switch partner"),
        });
    }
}

/// The forked partner: echoes every byte until QUIT or end of file. Only async-signal-safe
/// calls (close, read, write), as the caller may be a multi-threaded test binary.
fn partner(
    [to_child_r, to_child_w, to_parent_r, to_parent_w]: [libc::c_int; 4],
    touched: (usize, usize),
) -> libc::c_int {
    // Close the parent's ends, so each side sees end of file if the other dies.
    os::close_raw(to_child_w);
    os::close_raw(to_parent_r);
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is one writable byte; the descriptor is open in this process.
        let n = unsafe { libc::read(to_child_r, (&mut byte as *mut u8).cast(), 1) };
        match n {
            1 if byte == QUIT => return 0,
            1 => {}
            0 => return 0,
            _ if os::errno() == libc::EINTR => continue,
            _ => return 2,
        }
        std::hint::black_box(touch(touched));
        loop {
            // SAFETY: `byte` is one readable byte; the descriptor is open in this process.
            let n = unsafe { libc::write(to_parent_w, (&byte as *const u8).cast(), 1) };
            match n {
                1 => break,
                _ if n < 0 && os::errno() == libc::EINTR => continue,
                _ => return 3,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_pages_keeps_the_switch_count() {
        let mut p = Params::new();
        p.insert("pages".into(), 64.into());
        let out = ctxswitch_unix(&p, 10).unwrap();
        assert_eq!(out.work, 20.0);
        let t = Touched::new(3);
        // One word per page, each 1.
        assert_eq!(touch(t.view()), 3);
        assert_eq!(touch(Touched::new(0).view()), 0);
        p.insert("pages".into(), (MAX_PAGES + 1).into());
        assert!(matches!(
            ctxswitch_unix(&p, 1),
            Err(WorkloadError::BadParam(_))
        ));
    }
}
