//! The one mutex-poison policy of the workspace.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks that outlive a panic. Every value behind our mutexes is changed in
/// whole steps (an event pushed, a sample appended, a cache entry inserted),
/// so a panic elsewhere while one was held (a sink, a request handler)
/// leaves it consistent: take it and go on, rather than spread the panic to
/// every later request or sink.
pub trait LockExt<T> {
    /// The guard, whether or not another thread panicked while holding it.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
