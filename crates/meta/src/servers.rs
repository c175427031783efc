//! The file server registry and chunk placement.
//!
//! Which servers exist (id -> URL) is kept in the store so replica locations
//! survive a restart; whether a server is alive, and how full it is, is known
//! only from its heartbeats and kept in memory. A server known from the store
//! counts as alive for one heartbeat timeout after this process started (its
//! free space unknown, so heard-from servers are placed on first): a
//! directory service that restarts knows its file servers at once instead of
//! answering "no live file servers" until their next heartbeats. One that
//! sends none in that time is dead; a write placed on it meanwhile fails
//! over as for any server that dies (see the client's placement retries and
//! the write quorum).

use dfs_proto::chunk::{Heartbeat, ServerRef};
use dfs_proto::namespace::ServerStatus;
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A live server as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveServer {
    pub server: ServerRef,
    pub free_bytes: u64,
}

#[derive(Debug, Clone)]
struct ServerState {
    url: String,
    last_seen: Option<Instant>,
    capacity_bytes: u64,
    used_bytes: u64,
    chunk_count: u64,
    /// Set by `dfs cluster drain`; kept in memory only (a restarted directory
    /// service forgets it, and the drain must be asked for again).
    draining: bool,
}

/// Every known file server and what its last heartbeat said.
#[derive(Debug)]
pub struct ServerRegistry {
    heartbeat_timeout: Duration,
    started: Instant,
    servers: Mutex<HashMap<String, ServerState>>,
}

impl ServerRegistry {
    /// A registry knowing `known` (from the store), presumed alive for one
    /// heartbeat timeout, dead after that unless they send a heartbeat.
    pub fn new(heartbeat_timeout: Duration, known: Vec<ServerRef>) -> Self {
        let started = Instant::now();
        let servers = known
            .into_iter()
            .map(|server| {
                let state = ServerState {
                    url: server.url,
                    last_seen: Some(started),
                    capacity_bytes: 0,
                    used_bytes: 0,
                    chunk_count: 0,
                    draining: false,
                };
                (server.id, state)
            })
            .collect();
        ServerRegistry {
            heartbeat_timeout,
            started,
            servers: Mutex::new(servers),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServerState>> {
        self.servers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a heartbeat; returns true if the server is new or moved to
    /// another URL, so the caller must persist it.
    pub fn heartbeat(&self, heartbeat: &Heartbeat) -> bool {
        let mut servers = self.lock();
        let state = servers
            .entry(heartbeat.server.id.clone())
            .or_insert_with(|| ServerState {
                url: String::new(),
                last_seen: None,
                capacity_bytes: 0,
                used_bytes: 0,
                chunk_count: 0,
                draining: false,
            });
        let moved = state.url != heartbeat.server.url;
        state.url = heartbeat.server.url.clone();
        state.last_seen = Some(Instant::now());
        state.capacity_bytes = heartbeat.capacity_bytes;
        state.used_bytes = heartbeat.used_bytes;
        state.chunk_count = heartbeat.chunk_count;
        moved
    }

    fn is_alive(&self, state: &ServerState) -> bool {
        state
            .last_seen
            .is_some_and(|seen| seen.elapsed() < self.heartbeat_timeout)
    }

    /// The live servers, sorted by id.
    pub fn live(&self) -> Vec<LiveServer> {
        let servers = self.lock();
        let mut live: Vec<_> = servers
            .iter()
            .filter(|(_, state)| self.is_alive(state))
            .map(|(id, state)| LiveServer {
                server: ServerRef {
                    id: id.clone(),
                    url: state.url.clone(),
                },
                free_bytes: state.capacity_bytes.saturating_sub(state.used_bytes),
            })
            .collect();
        live.sort_by(|a, b| a.server.id.cmp(&b.server.id));
        live
    }

    pub fn live_ids(&self) -> HashSet<String> {
        self.live().into_iter().map(|live| live.server.id).collect()
    }

    /// The live servers that may take new replicas: live and not draining.
    /// Only their replicas count towards the replication factor.
    pub fn placeable(&self) -> Vec<LiveServer> {
        let draining: HashSet<String> = self
            .lock()
            .iter()
            .filter(|(_, state)| state.draining)
            .map(|(id, _)| id.clone())
            .collect();
        self.live()
            .into_iter()
            .filter(|live| !draining.contains(&live.server.id))
            .collect()
    }

    pub fn placeable_ids(&self) -> HashSet<String> {
        self.placeable().into_iter().map(|live| live.server.id).collect()
    }

    /// Starts or stops draining the server with this id or URL; returns its
    /// id, or `None` if no such server is known.
    pub fn set_draining(&self, id_or_url: &str, draining: bool) -> Option<String> {
        let mut servers = self.lock();
        let wanted = id_or_url.trim_end_matches('/');
        let (id, state) = servers
            .iter_mut()
            .find(|(id, state)| id.as_str() == wanted || state.url.trim_end_matches('/') == wanted)?;
        state.draining = draining;
        Some(id.clone())
    }

    /// The servers among `ids` whose URL is known: live ones first, then dead
    /// ones (a reader may still try them), each group in the order given.
    pub fn locate(&self, ids: &[String]) -> Vec<ServerRef> {
        let servers = self.lock();
        let mut known: Vec<(bool, ServerRef)> = ids
            .iter()
            .filter_map(|id| {
                let state = servers.get(id)?;
                let server = ServerRef {
                    id: id.clone(),
                    url: state.url.clone(),
                };
                Some((self.is_alive(state), server))
            })
            .collect();
        known.sort_by_key(|(alive, _)| !alive);
        known.into_iter().map(|(_, server)| server).collect()
    }

    /// Every known server for the status page; `replica_count` is left at 0.
    pub fn status(&self) -> Vec<ServerStatus> {
        let servers = self.lock();
        let mut status: Vec<_> = servers
            .iter()
            .map(|(id, state)| ServerStatus {
                id: id.clone(),
                url: state.url.clone(),
                alive: self.is_alive(state),
                last_seen_secs: state.last_seen.unwrap_or(self.started).elapsed().as_secs(),
                capacity_bytes: state.capacity_bytes,
                used_bytes: state.used_bytes,
                chunk_count: state.chunk_count,
                replica_count: 0,
                draining: state.draining,
            })
            .collect();
        status.sort_by(|a, b| a.id.cmp(&b.id));
        status
    }
}

/// Chooses `replication` distinct servers among `live` for each chunk size in
/// `chunk_sizes`, primary first. Servers with the most free space (less what
/// this call already placed on them) come first; among servers whose free
/// space is about the same (within 1/[`FREE_SPACE_STEPS`] of the most free),
/// those given fewer chunks by this call come first, then a random order. So
/// a batch spreads evenly, and so do the one-chunk calls of an upload: the
/// free space a server reports moves only with its heartbeats, and many
/// servers share a disk or have disks that are nearly as full as each
/// other's. Returns `None` if there are fewer than `replication` live servers.
pub fn place(
    live: &[LiveServer],
    chunk_sizes: &[u64],
    replication: u32,
    rng: &mut impl Rng,
) -> Option<Vec<Vec<ServerRef>>> {
    let replication = replication as usize;
    if replication == 0 || live.len() < replication {
        return None;
    }
    let tiebreak: Vec<u64> = live.iter().map(|_| rng.gen()).collect();
    let mut free: Vec<u64> = live.iter().map(|server| server.free_bytes).collect();
    let mut given = vec![0usize; live.len()];
    let mut order: Vec<usize> = (0..live.len()).collect();
    let mut placements = Vec::with_capacity(chunk_sizes.len());
    for &size in chunk_sizes {
        let most = free.iter().copied().max().unwrap_or(0);
        let step = (most / FREE_SPACE_STEPS).max(1);
        order.sort_by_key(|&index| ((most - free[index]) / step, given[index], tiebreak[index]));
        let chosen = &order[..replication];
        for &index in chosen {
            free[index] = free[index].saturating_sub(size);
            given[index] += 1;
        }
        placements.push(chosen.iter().map(|&index| live[index].server.clone()).collect());
    }
    Some(placements)
}

/// Free space counts in steps of the most free space divided by this (see
/// [`place`]).
pub const FREE_SPACE_STEPS: u64 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: &str, free_bytes: u64) -> LiveServer {
        LiveServer {
            server: ServerRef {
                id: id.into(),
                url: format!("http://{id}"),
            },
            free_bytes,
        }
    }

    fn ids(targets: &[ServerRef]) -> Vec<&str> {
        targets.iter().map(|server| server.id.as_str()).collect()
    }

    #[test]
    fn placement_prefers_free_space_and_picks_distinct_servers() {
        let servers = [live("a", 100), live("b", 300), live("c", 200), live("d", 10)];
        let placed = place(&servers, &[1], 3, &mut rand::thread_rng()).unwrap();
        assert_eq!(ids(&placed[0]), ["b", "c", "a"]);
    }

    #[test]
    fn placement_spreads_a_batch_over_equal_servers() {
        let servers = [live("a", 1000), live("b", 1000), live("c", 1000), live("d", 1000)];
        let placed = place(&servers, &[10; 8], 2, &mut rand::thread_rng()).unwrap();
        let mut per_server: HashMap<&str, usize> = HashMap::new();
        for targets in &placed {
            let distinct: HashSet<_> = ids(targets).into_iter().collect();
            assert_eq!(distinct.len(), 2);
            for id in distinct {
                *per_server.entry(id).or_default() += 1;
            }
        }
        assert_eq!(per_server.values().copied().collect::<Vec<_>>(), [4; 4]);
    }

    #[test]
    fn one_chunk_calls_spread_over_servers_with_about_the_same_free_space() {
        // Three servers on one disk: what they report differs by a few
        // chunks, depending on when each last sent a heartbeat.
        let servers = [
            live("a", 1_000_000),
            live("b", 999_000),
            live("c", 998_000),
            live("d", 10),
        ];
        let mut primaries: HashMap<String, usize> = HashMap::new();
        for _ in 0..300 {
            let placed = place(&servers, &[8], 1, &mut rand::thread_rng()).unwrap();
            *primaries.entry(placed[0][0].id.clone()).or_default() += 1;
        }
        assert!(
            !primaries.contains_key("d"),
            "the full server is never chosen: {primaries:?}"
        );
        for id in ["a", "b", "c"] {
            assert!(
                primaries.get(id).copied().unwrap_or(0) > 50,
                "{id} is rarely chosen: {primaries:?}"
            );
        }
    }

    #[test]
    fn placement_needs_enough_servers() {
        assert!(place(&[live("a", 1)], &[1], 2, &mut rand::thread_rng()).is_none());
        assert!(place(&[], &[1], 1, &mut rand::thread_rng()).is_none());
    }

    #[test]
    fn only_recent_heartbeats_count_as_alive() {
        let known = vec![ServerRef {
            id: "old".into(),
            url: "http://old".into(),
        }];
        let registry = ServerRegistry::new(Duration::from_millis(50), known);
        // Known from the store: presumed alive (free space unknown) for one
        // heartbeat timeout after the start.
        assert_eq!(registry.live(), [live("old", 0)]);
        std::thread::sleep(Duration::from_millis(60));
        assert!(registry.live().is_empty(), "known from the store but not heard from");
        let beat = Heartbeat {
            server: ServerRef {
                id: "new".into(),
                url: "http://new".into(),
            },
            capacity_bytes: 100,
            used_bytes: 40,
            chunk_count: 2,
        };
        assert!(registry.heartbeat(&beat));
        assert!(!registry.heartbeat(&beat), "same URL: nothing to persist");
        assert_eq!(registry.live(), [live("new", 60)]);
        assert_eq!(
            ids(&registry.locate(&["old".into(), "new".into(), "gone".into()])),
            ["new", "old"]
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(registry.live().is_empty());
    }
}
