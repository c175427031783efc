//! A load test: 32 concurrent clients doing mixed put, get, list and delete
//! for a bounded time, then every file that should exist is checked by hash.

use crate::cluster_with_users;
use dfs_client::{Client, GetOptions, PutOptions};
use dfs_proto::DfsPath;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const RUN_FOR: Duration = Duration::from_secs(6);

#[derive(Default)]
struct Tally {
    operations: u64,
    errors: Vec<String>,
    mismatches: Vec<String>,
    /// Name -> BLAKE3 hash of what the file should hold.
    expected: BTreeMap<String, blake3::Hash>,
}

async fn worker(client: Client, dir: DfsPath, seed: u64) -> Tally {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let deadline = Instant::now() + RUN_FOR;
    while Instant::now() < deadline {
        let name = format!("f{}", rng.gen_range(0..12));
        let path = dir.join(&name).unwrap();
        let operation = rng.gen_range(0..10);
        let outcome: Result<(), String> = match operation {
            // put: 40%
            0..=3 => {
                let mut content = vec![0u8; rng.gen_range(0..96 * 1024)];
                rng.fill_bytes(&mut content);
                match client.put(&path, &content[..], &PutOptions::default()).await {
                    Ok(_) => {
                        tally.expected.insert(name, blake3::hash(&content));
                        Ok(())
                    }
                    Err(error) => Err(format!("put {path}: {error}")),
                }
            }
            // get: 30%
            4..=6 => {
                let mut content = Vec::new();
                match client.get(&path, &mut content, &GetOptions::default()).await {
                    Ok(_) => {
                        if tally.expected.get(&name) != Some(&blake3::hash(&content)) {
                            tally.mismatches.push(format!("get {path} returned other bytes"));
                        }
                        Ok(())
                    }
                    Err(error) if error.is_not_found() && !tally.expected.contains_key(&name) => Ok(()),
                    Err(error) => Err(format!("get {path}: {error}")),
                }
            }
            // list: 20%
            7..=8 => match client.list(&dir).await {
                Ok(listing) => {
                    let names: Vec<_> = listing.entries.iter().filter_map(|e| e.path.name()).collect();
                    let wanted: Vec<_> = tally.expected.keys().map(String::as_str).collect();
                    if names != wanted {
                        tally
                            .mismatches
                            .push(format!("list {dir}: {names:?} instead of {wanted:?}"));
                    }
                    Ok(())
                }
                Err(error) => Err(format!("list {dir}: {error}")),
            },
            // delete: 10%
            _ => match client.remove(&path, false).await {
                Ok(()) => {
                    tally.expected.remove(&name);
                    Ok(())
                }
                Err(error) if error.is_not_found() && !tally.expected.contains_key(&name) => Ok(()),
                Err(error) => Err(format!("rm {path}: {error}")),
            },
        };
        tally.operations += 1;
        if let Err(error) = outcome {
            tally.errors.push(error);
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_clients_mixed_load_loses_nothing() {
    let cluster = cluster_with_users();
    let mut client = Client::new(cluster.url()).unwrap();
    let login = client.login("ann", "ann-password").await.unwrap();
    client.set_ticket(Some(login.ticket));
    let root = DfsPath::parse("/home/ann/load").unwrap();
    client.mkdir(&root, true, None).await.unwrap();
    let started = Instant::now();
    let mut workers = Vec::new();
    for index in 0..CLIENTS {
        let dir = root.join(&format!("c{index}")).unwrap();
        client.mkdir(&dir, false, None).await.unwrap();
        workers.push(tokio::spawn(worker(client.clone(), dir, index as u64)));
    }
    let mut tallies = Vec::new();
    for worker in workers {
        tallies.push(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    let operations: u64 = tallies.iter().map(|t| t.operations).sum();
    let errors: Vec<_> = tallies.iter().flat_map(|t| t.errors.iter()).collect();
    let mismatches: Vec<_> = tallies.iter().flat_map(|t| t.mismatches.iter()).collect();
    eprintln!(
        "load: {CLIENTS} clients, {operations} operations in {:.1} s = {:.0} ops/s, {} errors, {} mismatches",
        elapsed.as_secs_f64(),
        operations as f64 / elapsed.as_secs_f64(),
        errors.len(),
        mismatches.len()
    );
    assert!(errors.is_empty(), "errors: {errors:?}");
    assert!(mismatches.is_empty(), "mismatches: {mismatches:?}");
    // Afterwards, every file that should exist holds exactly what was last written.
    let mut checked = 0;
    for (index, tally) in tallies.iter().enumerate() {
        let dir = root.join(&format!("c{index}")).unwrap();
        let listing = client.list(&dir).await.unwrap();
        let names: Vec<_> = listing
            .entries
            .iter()
            .filter_map(|e| e.path.name().map(str::to_string))
            .collect();
        assert_eq!(names, tally.expected.keys().cloned().collect::<Vec<_>>());
        for (name, hash) in &tally.expected {
            let mut content = Vec::new();
            client
                .get(&dir.join(name).unwrap(), &mut content, &GetOptions::default())
                .await
                .unwrap();
            assert_eq!(&blake3::hash(&content), hash, "{dir}/{name}");
            checked += 1;
        }
    }
    assert!(checked > CLIENTS, "the load left files to check: {checked}");
    assert!(operations > 200, "the load did something: {operations}");
}
