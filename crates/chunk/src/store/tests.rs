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
    assert_eq!(
        store.put(&id, Bytes::copy_from_slice(&bytes)).await.unwrap(),
        Stored::New
    );
    assert!(store.exists(&id).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap(), bytes);
    assert_eq!(
        store.put(&id, Bytes::copy_from_slice(&bytes)).await.unwrap(),
        Stored::AlreadyPresent
    );

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
    let error = store.put(&id, Bytes::from_static(b"something else")).await.unwrap_err();
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
    temp.write(Bytes::from_static(b"half a chunk")).await.unwrap();
    // More than a writer's buffer: the writer is busy when the chunk is dropped.
    temp.write(Bytes::from(vec![1; 3 * WRITE_BUFFER])).await.unwrap();
    assert_eq!(temp.len(), 12 + 3 * WRITE_BUFFER as u64);
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
    store.put(&id, Bytes::copy_from_slice(&bytes)).await.unwrap();
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
    store.put(&id, Bytes::copy_from_slice(&bytes)).await.unwrap();

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
    store.put(&id, Bytes::from(bytes.clone())).await.unwrap();
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
    store.put(&id, Bytes::copy_from_slice(&bytes)).await.unwrap();

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

/// The filesystems the store must work on that this machine has: the usual
/// temporary dir (a disk filesystem, where direct writes apply) and tmpfs.
fn test_dirs() -> Vec<tempfile::TempDir> {
    let mut dirs = vec![tempfile::tempdir().unwrap()];
    if Path::new("/dev/shm").is_dir() {
        dirs.push(tempfile::tempdir_in("/dev/shm").unwrap());
    }
    dirs
}

/// Whether `path` is on ext4, where `O_DIRECT` is always supported.
#[allow(unsafe_code)]
fn is_ext4(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut stats = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stats` has room for the
    // struct statfs that a successful call fills in (read only then).
    unsafe {
        libc::statfs(path.as_ptr(), stats.as_mut_ptr()) == 0 && stats.assume_init().f_type == libc::EXT4_SUPER_MAGIC
    }
}

#[tokio::test]
async fn chunks_of_every_length_are_stored_exactly_on_each_filesystem() {
    let lengths = [
        0,
        1,
        DIRECT_ALIGN - 1,
        DIRECT_ALIGN,
        DIRECT_ALIGN + 1,
        WRITE_BUFFER - 1,
        WRITE_BUFFER,
        WRITE_BUFFER + DIRECT_ALIGN,
        3 * WRITE_BUFFER + 12_345,
        8 * 1024 * 1024,
    ];
    for dir in test_dirs() {
        let store = ChunkStore::open(dir.path()).unwrap();
        for (index, &length) in lengths.iter().enumerate() {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 31 + index) as u8).collect();
            let id = id_of(&bytes);
            // Frames of uneven sizes, as a network body comes in.
            let mut temp = store.create_temp().await.unwrap();
            let mut rest = &bytes[..];
            for frame_len in [1000, 65_536, 300_001].into_iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (frame, after) = rest.split_at(frame_len.min(rest.len()));
                temp.write(Bytes::copy_from_slice(frame)).await.unwrap();
                rest = after;
            }
            assert_eq!(temp.commit(&store, &id).await.unwrap(), Stored::New, "{length} bytes");
            assert!(
                std::fs::read(store.chunk_path(&id)).unwrap() == bytes,
                "{length} bytes in {dir:?}"
            );
        }
        assert_eq!(store.list().unwrap().len(), lengths.len());
        assert_eq!(tmp_entries(dir.path()), 0);
        if is_ext4(dir.path()) {
            // Aligned writes are never refused where direct I/O works.
            assert!(store.writes_direct(), "{dir:?}");
        }
    }
}

#[tokio::test]
async fn a_refused_direct_write_falls_back_to_buffered_writes() {
    let dir = tempfile::tempdir().unwrap();
    if !is_ext4(dir.path()) {
        eprintln!("skipped: {dir:?} is not on ext4");
        return;
    }
    let store = ChunkStore::open(dir.path()).unwrap();
    let (temp, mut writer) = store.open_temp().unwrap();
    assert!(writer.direct);
    let pattern: Vec<u8> = (0..DIRECT_ALIGN + 1).map(|i| (i % 251) as u8).collect();
    writer.buffer.bytes_mut()[..pattern.len()].copy_from_slice(&pattern);
    // A direct write from an unaligned address: ext4 refuses it with EINVAL.
    writer.write_staged(1..pattern.len()).unwrap();
    assert!(!writer.direct);
    assert!(!store.writes_direct());
    assert_eq!(std::fs::read(&temp.0).unwrap(), pattern[1..]);
    drop((temp, writer));

    // The store now writes buffered, from the start of each file.
    let (_temp, writer) = store.open_temp().unwrap();
    assert!(!writer.direct);
    let bytes = vec![9u8; WRITE_BUFFER + 1];
    let id = id_of(&bytes);
    assert_eq!(store.put(&id, Bytes::from(bytes.clone())).await.unwrap(), Stored::New);
    assert_eq!(store.get(&id).await.unwrap(), bytes);
}
