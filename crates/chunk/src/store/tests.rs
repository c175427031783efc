use super::*;

fn id_of(bytes: &[u8]) -> ChunkId {
    ChunkId::from_hash_bytes(blake3::hash(bytes).as_bytes())
}

fn tmp_entries(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join(TMP_DIR)).unwrap().count()
}

#[tokio::test]
async fn a_chunk_is_stored_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let bytes = b"hello chunk".to_vec();
    let id = id_of(&bytes);

    assert!(!store.exists(&id).await.unwrap());
    assert!(matches!(store.get(&id).await, Err(ReadError::NotFound)));
    assert_eq!(store.put(&id, &bytes).await.unwrap(), Stored::New);
    assert!(store.exists(&id).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap(), bytes);
    assert_eq!(store.put(&id, &bytes).await.unwrap(), Stored::AlreadyPresent);

    let path = store.chunk_path(&id);
    assert_eq!(
        path,
        dir.path().join("chunks").join(&id.as_str()[..2]).join(id.as_str())
    );
    assert_eq!(store.list().unwrap(), vec![(id, bytes.len() as u64)]);
    assert_eq!(tmp_entries(dir.path()), 0);
}

#[tokio::test]
async fn content_that_does_not_match_its_id_is_refused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let id = id_of(b"the real content");
    let error = store.put(&id, b"something else").await.unwrap_err();
    assert!(matches!(error, CommitError::ChecksumMismatch { .. }), "{error}");
    assert!(!store.exists(&id).await.unwrap());
    assert_eq!(tmp_entries(dir.path()), 0);
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn an_abandoned_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let mut temp = store.create_temp().await.unwrap();
    temp.write(b"half a chunk").await.unwrap();
    assert_eq!(temp.len(), 12);
    assert_eq!(tmp_entries(dir.path()), 1);
    drop(temp);
    assert_eq!(tmp_entries(dir.path()), 0);
}

#[tokio::test]
async fn a_corrupt_chunk_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let bytes = vec![7u8; 4096];
    let id = id_of(&bytes);
    store.put(&id, &bytes).await.unwrap();
    let mut rotten = bytes.clone();
    rotten[100] ^= 1;
    std::fs::write(store.chunk_path(&id), &rotten).unwrap();
    assert!(matches!(store.get(&id).await, Err(ReadError::Corrupt { .. })));
}

#[tokio::test]
async fn a_reader_checks_the_hash_before_the_last_piece() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = id_of(&bytes);
    store.put(&id, &bytes).await.unwrap();

    let mut reader = store.open_reader(&id, Verify::Here).unwrap();
    assert_eq!(reader.len(), 10_000);
    let mut read = Vec::new();
    while let Some(piece) = reader.next_piece(4096).unwrap() {
        assert!(piece.len() <= 4096);
        read.extend_from_slice(&piece);
    }
    assert!(reader.is_done());
    assert_eq!(read, bytes);

    let mut rotten = bytes.clone();
    rotten[9_999] ^= 1;
    std::fs::write(store.chunk_path(&id), &rotten).unwrap();
    let mut reader = store.open_reader(&id, Verify::Here).unwrap();
    assert_eq!(reader.next_piece(4096).unwrap().unwrap().len(), 4096);
    assert_eq!(reader.next_piece(4096).unwrap().unwrap().len(), 4096);
    assert!(matches!(reader.next_piece(4096), Err(ReadError::Corrupt { .. })));

    // A chunk cut short: the content is checked at open (nothing to read).
    std::fs::write(store.chunk_path(&id), b"").unwrap();
    assert!(matches!(
        store.open_reader(&id, Verify::Here),
        Err(ReadError::Corrupt { .. })
    ));
    assert!(matches!(
        store.open_reader(&id_of(b"absent"), Verify::Here),
        Err(ReadError::NotFound)
    ));
}

#[tokio::test]
async fn a_reader_for_a_checking_receiver_hands_out_every_byte_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let id = id_of(&bytes);
    store.put(&id, &bytes).await.unwrap();
    let mut rotten = bytes.clone();
    rotten[9_999] ^= 1;
    std::fs::write(store.chunk_path(&id), &rotten).unwrap();

    // The bytes on disk, as they are: the receiver's hash finds the damage.
    let mut reader = store.open_reader(&id, Verify::ByReader).unwrap();
    let mut read = Vec::new();
    while let Some(piece) = reader.next_piece(4096).unwrap() {
        read.extend_from_slice(&piece);
    }
    assert_eq!(read, rotten);
    assert_ne!(id_of(&read), id);
    // A short file is still an error, whoever checks.
    let mut reader = store.open_reader(&id, Verify::ByReader).unwrap();
    std::fs::write(store.chunk_path(&id), &rotten[..5_000]).unwrap();
    assert_eq!(reader.next_piece(4096).unwrap().unwrap().len(), 4096);
    assert!(matches!(reader.next_piece(8192), Err(ReadError::Io(_))));
}

#[tokio::test]
async fn opening_removes_leftovers_and_skips_strays() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let bytes = b"kept".to_vec();
    let id = id_of(&bytes);
    store.put(&id, &bytes).await.unwrap();

    std::fs::write(dir.path().join("tmp/leftover"), b"partial").unwrap();
    std::fs::create_dir(dir.path().join("tmp/odd-dir")).unwrap();
    std::fs::write(dir.path().join("chunks/README"), b"not a chunk").unwrap();
    std::fs::write(dir.path().join("chunks").join(&id.as_str()[..2]).join("junk"), b"x").unwrap();
    // A valid id in the wrong shard is not a chunk either.
    let other = id_of(b"other");
    let wrong_shard = if &other.as_str()[..2] == "00" { "01" } else { "00" };
    std::fs::create_dir_all(dir.path().join("chunks").join(wrong_shard)).unwrap();
    std::fs::write(
        dir.path().join("chunks").join(wrong_shard).join(other.as_str()),
        b"other",
    )
    .unwrap();

    let reopened = ChunkStore::open(dir.path()).unwrap();
    assert_eq!(tmp_entries(dir.path()), 0);
    assert_eq!(reopened.list().unwrap(), vec![(id.clone(), 4)]);
    assert_eq!(reopened.get(&id).await.unwrap(), bytes);
}
