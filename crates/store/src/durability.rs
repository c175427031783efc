//! How durable a write must be when the call that made it returns.
//!
//! Every write is [`Durability::Synced`] unless its caller asked otherwise
//! with [`with_durability`]: a write returns once it is committed *and* on
//! stable storage (an acknowledged write survives a power loss). A
//! [`Durability::Deferred`] write returns once it is committed, visible to
//! every reader and safe from the death of any process (it is in the
//! operating system's hands), before it is on stable storage; the engine
//! makes it durable right behind (SQLite: its syncer fsyncs the log within
//! one sync's time; PostgreSQL: `synchronous_commit = off`, the WAL writer
//! flushes within `wal_writer_delay`). [`crate::NamespaceStore::sync`] is
//! the barrier: once it returns, every write committed before it is
//! durable, deferred or not. The mount asks for deferred writes, as a local
//! file system answers `mkdir` before it is durable and makes it durable at
//! `fsync` (docs/posix.md, "Durability"; decision 0014).
//!
//! The choice travels with the calling thread, not through every method's
//! arguments: set once per request by the directory service, read where an
//! engine opens its transaction. An engine that runs a write on another
//! thread carries it there (`model::Engine::queue_write`).

use std::cell::Cell;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Answered once on stable storage (the default).
    #[default]
    Synced,
    /// Answered once committed; on stable storage at the next
    /// [`crate::NamespaceStore::sync`], or shortly after by itself.
    Deferred,
}

thread_local! {
    static CURRENT: Cell<Durability> = const { Cell::new(Durability::Synced) };
}

/// Runs `work` with its writes made at `durability` (on this thread), and
/// restores the previous choice after, even if `work` panics.
pub fn with_durability<T>(durability: Durability, work: impl FnOnce() -> T) -> T {
    struct Restore(Durability);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|current| current.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|current| current.replace(durability)));
    work()
}

/// The durability writes made now on this thread are asked for.
pub fn current() -> Durability {
    CURRENT.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_is_scoped_and_restored_even_by_a_panic() {
        assert_eq!(current(), Durability::Synced);
        with_durability(Durability::Deferred, || {
            assert_eq!(current(), Durability::Deferred);
            with_durability(Durability::Synced, || assert_eq!(current(), Durability::Synced));
            assert_eq!(current(), Durability::Deferred);
        });
        assert_eq!(current(), Durability::Synced);
        let panicked = std::panic::catch_unwind(|| with_durability(Durability::Deferred, || panic!("boom")));
        assert!(panicked.is_err());
        assert_eq!(current(), Durability::Synced);
    }
}
