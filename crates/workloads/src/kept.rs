//! Buffers kept from one repetition to the next.
//!
//! A memory workload's buffer is tens of MiB that must be faulted in and written before the
//! clock starts. Natively that costs milliseconds; in a guest whose page faults are expensive
//! (User-Mode Linux pays ~100 µs per fault, so 64 MiB took 3-4 s) it cost far more than the
//! 0.2 s repetition it prepared, for every repetition, warm-up and calibration probe. The
//! harness sends a workload's repetitions as consecutive jobs, so the buffer is kept in the
//! agent's thread between them and handed back to the next run of the same workload with the
//! same size; the measured loop is unchanged (it never included the set-up).
//!
//! At most one set of buffers is kept. The agent releases it when a job for another workload
//! arrives ([`release_unless`]), so an application or a stressor never runs with memory held
//! for a workload that is finished. Copies run in threads of their own, which keep nothing.

use std::cell::RefCell;

use crate::WorkloadError;

struct Kept {
    owner: &'static str,
    words: usize,
    buffers: Vec<Vec<u64>>,
}

thread_local! {
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// Runs `f` on the buffers `owner` kept with this size, or on new ones from `make`, and keeps
/// them afterwards. A failed `make` or `f` keeps nothing.
pub(crate) fn with_buffers<R>(
    owner: &'static str,
    words: usize,
    make: impl FnOnce() -> Result<Vec<Vec<u64>>, WorkloadError>,
    f: impl FnOnce(&mut [Vec<u64>]) -> Result<R, WorkloadError>,
) -> Result<R, WorkloadError> {
    let reusable = KEPT.with(|k| {
        let mut k = k.borrow_mut();
        match k.take() {
            Some(kept) if kept.owner == owner && kept.words == words => Some(kept.buffers),
            // Another workload's or another size's buffers: freed before allocating, so that
            // both are never held at once.
            _ => None,
        }
    });
    let mut buffers = match reusable {
        Some(b) => b,
        None => make()?,
    };
    let result = f(&mut buffers)?;
    KEPT.with(|k| {
        *k.borrow_mut() = Some(Kept {
            owner,
            words,
            buffers,
        })
    });
    Ok(result)
}

/// Frees the kept buffers unless they belong to `workload`. The agent calls it at every job.
pub fn release_unless(workload: &str) {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        if k.as_ref().is_some_and(|kept| kept.owner != workload) {
            *k = None;
        }
    });
}

/// Whether buffers are kept on this thread (for tests).
#[cfg(test)]
pub(crate) fn holds(owner: &str) -> bool {
    KEPT.with(|k| k.borrow().as_ref().is_some_and(|kept| kept.owner == owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_only_the_same_owner_and_size() {
        let mut made = 0;
        let mut run = |owner, words| {
            with_buffers(
                owner,
                words,
                || {
                    made += 1;
                    Ok(vec![vec![0u64; words]])
                },
                |b| Ok(b[0].len()),
            )
            .unwrap()
        };
        assert_eq!(run("a", 8), 8);
        assert_eq!(run("a", 8), 8);
        assert_eq!(run("a", 16), 16);
        assert_eq!(run("b", 16), 16);
        assert_eq!(made, 3);
        release_unless("b");
        assert!(holds("b"));
        release_unless("c");
        assert!(!holds("b"));
    }

    #[test]
    fn a_failure_keeps_nothing() {
        let r: Result<(), _> = with_buffers(
            "x",
            4,
            || Ok(vec![vec![1; 4]]),
            |_| Err(WorkloadError::Failed("no".into())),
        );
        assert!(r.is_err());
        assert!(!holds("x"));
    }
}
