use super::*;

fn chunk(seed: u8, len: usize) -> (ChunkId, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    (ChunkId::from_hash_bytes(blake3::hash(&data).as_bytes()), data)
}

#[test]
fn a_stored_chunk_comes_back_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (id, data) = chunk(1, 1000);
    {
        let cache = Cache::open(dir.path(), DEFAULT_CAPACITY).unwrap();
        assert_eq!(cache.get(&id, 1000), None);
        cache.insert(&id, &data).unwrap();
        assert_eq!(cache.get(&id, 1000).as_deref(), Some(&data[..]));
    }
    let cache = Cache::open(dir.path(), DEFAULT_CAPACITY).unwrap();
    assert_eq!(cache.get(&id, 1000).as_deref(), Some(&data[..]));
    let stats = cache.stats().unwrap();
    assert_eq!((stats.entries, stats.bytes, stats.hits, stats.misses), (1, 1000, 1, 0));
    assert!(dir
        .path()
        .join("chunks")
        .join(&id.as_str()[..2])
        .join(id.as_str())
        .is_file());
}

#[test]
fn a_corrupted_entry_is_detected_deleted_and_missed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), DEFAULT_CAPACITY).unwrap();
    let (id, data) = chunk(2, 4096);
    cache.insert(&id, &data).unwrap();
    let path = cache.entry_path(&id);
    // A flipped bit, then a truncation, then an entry too long.
    let mut bad = data.clone();
    bad[100] ^= 1;
    for corruption in [bad, data[..10].to_vec(), [&data[..], b"x"].concat()] {
        std::fs::write(&path, &corruption).unwrap();
        assert_eq!(cache.get(&id, 4096), None);
        assert!(!path.exists(), "the corrupt entry is deleted");
        cache.insert(&id, &data).unwrap();
        assert_eq!(cache.get(&id, 4096).as_deref(), Some(&data[..]));
    }
    assert_eq!(cache.stats().unwrap().corrupt, 3);
}

#[test]
fn the_cache_stays_under_its_capacity_evicting_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 10_000).unwrap();
    let chunks: Vec<_> = (0..5u8).map(|seed| chunk(seed, 3000)).collect();
    for (index, (id, data)) in chunks.iter().enumerate() {
        cache.insert(id, data).unwrap();
        // Distinct mtimes, then keep chunk 0 in use.
        std::thread::sleep(Duration::from_millis(20));
        if index > 0 {
            assert!(cache.get(&chunks[0].0, 3000).is_some(), "chunk 0 is kept: it is used");
        }
        assert!(cache.stats().unwrap().bytes <= 10_000);
    }
    assert!(cache.get(&chunks[4].0, 3000).is_some(), "the newest is kept");
    assert!(
        cache.get(&chunks[1].0, 3000).is_none(),
        "the least recently used went first"
    );
    // Reopening with a smaller capacity evicts at once.
    drop(cache);
    let cache = Cache::open(dir.path(), 3000).unwrap();
    assert!(cache.stats().unwrap().bytes <= 3000);
}

#[test]
fn clear_empties_the_cache_and_crash_leftovers_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), DEFAULT_CAPACITY).unwrap();
    for seed in 0..3 {
        let (id, data) = chunk(seed, 100);
        cache.insert(&id, &data).unwrap();
    }
    assert_eq!(cache.clear().unwrap(), 3);
    assert_eq!(cache.stats().unwrap().entries, 0);

    // A temp file left by a crash is not an entry, and goes once stale.
    let leftover = dir.path().join("tmp").join("half-written");
    std::fs::write(&leftover, b"partial").unwrap();
    let old = SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let cache = Cache::open(dir.path(), DEFAULT_CAPACITY).unwrap();
    assert_eq!(cache.stats().unwrap().entries, 0);
    assert!(!leftover.exists());
}

#[test]
fn a_chunk_larger_than_the_cache_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 100).unwrap();
    let (id, data) = chunk(9, 200);
    cache.insert(&id, &data).unwrap();
    assert_eq!(cache.stats().unwrap().entries, 0);
}
