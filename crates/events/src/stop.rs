//! Asking a run to stop, and saying why: one handle shared by whoever may
//! stop it (Ctrl-C, SIGTERM, the web API, the NaN rule, a failing log) and
//! the trainer, which looks at it between batches.

use crate::LockExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why a run was asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A person asked (Ctrl-C, SIGTERM, the page's Stop button).
    User,
    /// The loss became NaN or infinite and `--stop-on-nan` is on.
    LossNotFinite,
    /// The run cannot go on (its log cannot be written, …): it fails.
    Failed(String),
}

/// A cheap, cloneable stop request shared across threads.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    requested: AtomicBool,
    reason: Mutex<Option<StopReason>>,
}

impl Stop {
    /// A handle with no stop requested.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop after its current batch. The first reason is
    /// kept, except that a failure outranks a person's request.
    pub fn request(&self, reason: StopReason) {
        let mut current = self.0.reason.locked();
        let replace = match (&*current, &reason) {
            (None, _) => true,
            (Some(StopReason::Failed(_)), _) => false,
            (Some(_), StopReason::Failed(_)) => true,
            _ => false,
        };
        if replace {
            *current = Some(reason);
        }
        self.0.requested.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested (cheap: checked between batches).
    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::Relaxed)
    }

    /// Why, once requested.
    pub fn reason(&self) -> Option<StopReason> {
        self.0.reason.locked().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_outranks_a_person_and_is_never_replaced() {
        let stop = Stop::new();
        assert!(!stop.is_requested());
        stop.request(StopReason::User);
        stop.request(StopReason::LossNotFinite);
        assert_eq!(stop.reason(), Some(StopReason::User));
        stop.clone().request(StopReason::Failed("disk full".into()));
        stop.request(StopReason::User);
        assert!(stop.is_requested());
        assert_eq!(stop.reason(), Some(StopReason::Failed("disk full".into())));
    }
}
