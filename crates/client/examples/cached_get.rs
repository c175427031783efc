//! Uploads a local file, then downloads it twice through a disk cache, and
//! watches the file's directory meanwhile.
//!
//! ```sh
//! dfs up &                                    # a local cluster
//! DFS_USER=admin DFS_PASSWORD=$(cat dfs-data/admin-password) \
//!   cargo run -p dfs-client --example cached_get -- README.md /README.md
//! ```

use dfs_client::{Cache, Client, GetOptions, PutOptions};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (local, remote) = match (args.next(), args.next()) {
        (Some(local), Some(remote)) => (local, remote),
        _ => return Err("usage: cached_get LOCAL_FILE REMOTE_PATH".into()),
    };
    let url = std::env::var("DFS_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let user = std::env::var("DFS_USER").unwrap_or_else(|_| "admin".into());
    let password = std::env::var("DFS_PASSWORD").map_err(|_| "set DFS_PASSWORD")?;

    let cache_dir = std::env::temp_dir().join("dfs-example-cache");
    let cache = Arc::new(Cache::open(&cache_dir, dfs_client::cache::DEFAULT_CAPACITY)?);
    let mut client = Client::new(&url)?.with_cache(Arc::clone(&cache));
    let login = client.login(&user, &password).await?;
    client.set_ticket(Some(login.ticket));

    let path: dfs_proto::DfsPath = remote.parse()?;
    let parent = path.parent().ok_or("give a file path, not /")?;
    let mut watch = client.watch(&parent).await?;

    let file = tokio::fs::File::open(&local).await?;
    let summary = client.put_with_summary(&path, file, &PutOptions::default()).await?;
    println!(
        "put {path}: {} chunks sent, {} already stored",
        summary.chunks_sent, summary.chunks_deduplicated
    );
    if let Some(event) = watch.next().await? {
        println!("watch: {:?} {} (version {})", event.kind, event.path, event.version);
    }

    for attempt in ["first", "second"] {
        let layout = client.layout(&path).await?;
        let mut sink = Vec::new();
        let got = client
            .get_layout_with_summary(&layout.chunks, &mut sink, &GetOptions::default())
            .await?;
        println!(
            "{attempt} get: {} bytes, {} chunks from the cache, {} fetched",
            sink.len(),
            got.chunks_cached,
            got.chunks_fetched
        );
    }
    println!("cache: {:?}", cache.stats()?);
    Ok(())
}
