use super::*;
use dfs_proto::chunk::ChunkId;

/// A page of chunks of the given sizes, the first at `start`.
fn page(start: u64, sizes: &[u64]) -> Page {
    let mut offset = start;
    let chunks = sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| {
            let chunk = ChunkLocation {
                id: ChunkId::from_hash_bytes(&[index as u8; 32]),
                size,
                offset,
                replicas: Vec::new(),
                capability: String::new(),
            };
            offset += size;
            chunk
        })
        .collect();
    Page {
        chunks,
        fetched: Instant::now(),
    }
}

#[test]
fn a_page_covers_the_bytes_of_its_chunks_only() {
    // Chunks at 100..104, 104..110, 110..111 (unequal, as a composed file's).
    let page = page(100, &[4, 6, 1]);
    assert!(page.covering(99).is_none());
    assert_eq!(page.covering(100).unwrap().offset, 100);
    assert_eq!(page.covering(103).unwrap().offset, 100);
    assert_eq!(page.covering(104).unwrap().offset, 104);
    assert_eq!(page.covering(109).unwrap().offset, 104);
    assert_eq!(page.covering(110).unwrap().offset, 110);
    assert!(page.covering(111).is_none());
    assert!(page.covering(u64::MAX).is_none());
}
