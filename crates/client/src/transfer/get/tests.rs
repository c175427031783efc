use super::{covering, cut};
use bytes::Bytes;
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::ChunkLocation;
use std::ops::Range;

/// Chunks of these sizes, one after the other from byte 0.
fn chunks(sizes: &[u64]) -> Vec<ChunkLocation> {
    let mut offset = 0;
    sizes
        .iter()
        .enumerate()
        .map(|(index, size)| {
            let chunk = ChunkLocation {
                id: ChunkId::from_hash_bytes(&[index as u8; 32]),
                size: *size,
                offset,
                replicas: Vec::new(),
                capability: String::new(),
            };
            offset += size;
            chunk
        })
        .collect()
}

#[test]
fn a_range_covers_exactly_the_chunks_holding_its_bytes() {
    let all = chunks(&[10, 10, 5, 20]);
    // (range, offsets of the chunks covering it)
    let cases: &[(Range<u64>, &[u64])] = &[
        (0..45, &[0, 10, 20, 25]),
        (0..u64::MAX, &[0, 10, 20, 25]),
        (0..10, &[0]),
        (9..11, &[0, 10]),
        (10..20, &[10]),
        (21..22, &[20]),
        (44..45, &[25]),
        (25..1000, &[25]),
        (45..50, &[]),
    ];
    for (range, offsets) in cases {
        let got: Vec<u64> = covering(&all, range).iter().map(|chunk| chunk.offset).collect();
        assert_eq!(got, *offsets, "{range:?}");
    }
}

#[test]
fn pieces_are_cut_to_the_range_without_copies() {
    let data: Vec<u8> = (0..30).collect();
    let pieces = |sizes: &[usize]| -> Vec<Bytes> {
        let whole = Bytes::from(data.clone());
        let mut start = 0;
        sizes
            .iter()
            .map(|size| {
                start += size;
                whole.slice(start - size..start)
            })
            .collect()
    };
    // A chunk at byte 100 arrived in pieces of 7, 13 and 10 bytes.
    for range in [100..130, 0..u64::MAX, 103..104, 107..120, 105..125, 129..200, 90..101] {
        let got: Vec<u8> = cut(pieces(&[7, 13, 10]), 100, &range).flatten().collect();
        let (from, to) = (range.start.max(100) - 100, range.end.min(130) - 100);
        assert_eq!(got, data[from as usize..to as usize], "{range:?}");
    }
    // No empty piece is passed on.
    assert!(cut(pieces(&[7, 13, 10]), 100, &(107..120)).all(|piece| !piece.is_empty()));
    assert_eq!(cut(pieces(&[7, 13, 10]), 100, &(107..120)).count(), 1);
}
