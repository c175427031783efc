//! Export and import of a whole MongoDB store (see [`crate::dump`]).

use super::namespace::{replica_row, Inode};
use super::users::UserDoc;
use super::{int, MongoStore, Tx, FENCE_COUNTER, INODES, LOCK_GRANTS, REPLICAS, ROOT_ID, SERVERS, UID_COUNTER, USERS};
use crate::dump::{
    check_import, import_entries, linked_entries, Dump, DumpEntry, DumpFence, DumpReplica, DumpStore, DumpUser,
    EntryRows, DUMP_FORMAT,
};
use crate::StoreResult;
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::path::DfsPath;
use mongodb::bson::{doc, Document};
use std::collections::{HashMap, HashSet};

fn export_in(tx: &mut Tx<'_>) -> StoreResult<Dump> {
    let users: Vec<DumpUser> = tx
        .find::<UserDoc>(USERS, Document::new(), doc! {"_id": 1}, Document::new())?
        .into_iter()
        .map(|user| DumpUser {
            uid: user.uid,
            name: user.name,
            password_hash: user.password_hash,
            admin: user.admin,
            created_at: user.created_at,
        })
        .collect();
    let last_uid = tx.counter(UID_COUNTER)?;
    let next_uid = last_uid.max(users.iter().map(|user| user.uid).max().unwrap_or(0)) + 1;

    // Paths from parent links, the root first.
    let nodes: Vec<Inode> = tx.find(INODES, Document::new(), Document::new(), Document::new())?;
    let mut children: HashMap<i64, Vec<Inode>> = HashMap::new();
    let mut root = None;
    for node in nodes {
        if node.id == ROOT_ID {
            root = Some(node);
        } else {
            children.entry(node.parent).or_default().push(node);
        }
    }
    let root = root.ok_or_else(|| anyhow::anyhow!("the root directory is missing"))?;
    let mut entries = Vec::new();
    let mut pending = vec![(DfsPath::root(), root)];
    while let Some((path, node)) = pending.pop() {
        for child in children.remove(&node.id).unwrap_or_default() {
            let child_path = path
                .join(&child.name)
                .map_err(|error| super::bad("entry name", error))?;
            pending.push((child_path, child));
        }
        entries.push((
            node.id,
            node.link_to,
            DumpEntry {
                path,
                kind: node.kind,
                owner_uid: node.owner_uid,
                owner_name: node.owner_name,
                mode: node.mode,
                size: node.size,
                mtime_ms: node.mtime_ms,
                ctime_ms: Some(node.ctime_ms.unwrap_or(node.mtime_ms)),
                version: node.version,
                chunks: node.chunks,
                inline: node.data.map(|data| data.bytes),
                attributes: node.attributes,
                link: None,
                local_owner: node.local_owner,
            },
        ));
    }
    let entries = linked_entries(entries)?;

    let servers = tx
        .find::<Document>(SERVERS, Document::new(), doc! {"_id": 1}, Document::new())?
        .iter()
        .map(|row| {
            Ok(ServerRef {
                id: row
                    .get_str("_id")
                    .map_err(|error| super::bad("server", error))?
                    .to_string(),
                url: row
                    .get_str("url")
                    .map_err(|error| super::bad("server", error))?
                    .to_string(),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;

    let mut replicas = Vec::new();
    for row in tx.find::<Document>(
        REPLICAS,
        Document::new(),
        doc! {"chunk": 1, "server": 1},
        Document::new(),
    )? {
        let (chunk, server) = replica_row(&row)?;
        replicas.push(DumpReplica {
            chunk: ChunkId::parse(chunk).map_err(|error| super::bad("chunk id", error))?,
            server: server.to_string(),
            size: row.get_i64("size").map_err(|error| super::bad("replica", error))? as u64,
        });
    }

    let mut fences = Vec::new();
    for row in tx.find::<Document>(LOCK_GRANTS, Document::new(), doc! {"_id": 1}, Document::new())? {
        let path = row.get_str("_id").map_err(|error| super::bad("lock grant", error))?;
        fences.push(DumpFence {
            path: DfsPath::parse(path).map_err(|error| super::bad("lock path", error))?,
            fence: row.get_i64("fence").map_err(|error| super::bad("lock grant", error))? as u64,
        });
    }
    Ok(Dump {
        format: DUMP_FORMAT,
        next_uid,
        users,
        entries,
        servers,
        replicas,
        fences,
    })
}

fn import_in(tx: &mut Tx<'_>, dump: &Dump) -> StoreResult<()> {
    let users = tx.count(USERS, Document::new())?;
    let inodes = tx.count(INODES, Document::new())?;
    check_import(dump, users, inodes)?;

    let user_docs: Vec<UserDoc> = dump
        .users
        .iter()
        .map(|user| UserDoc {
            uid: user.uid,
            name: user.name.clone(),
            password_hash: user.password_hash.clone(),
            admin: user.admin,
            created_at: user.created_at,
        })
        .collect();
    tx.insert_many(USERS, &user_docs)?;
    let last_uid = dump.last_uid();
    tx.raise_counter(UID_COUNTER, last_uid)?;

    // Ids for every entry but `/` and `/home`, reserved at once; the new
    // inodes are inserted together.
    let next_id = tx.reserve_inode_ids(dump.entries.len() as u64)?;
    let mut import = Import {
        tx,
        next_id,
        nodes: Vec::new(),
    };
    import_entries(&mut import, &dump.entries)?;
    let Import { tx, nodes, .. } = import;
    tx.insert_many(INODES, &nodes)?;

    let servers: Vec<Document> = dump
        .servers
        .iter()
        .map(|server| doc! {"_id": &server.id, "url": &server.url})
        .collect();
    tx.insert_many(SERVERS, &servers)?;
    let mut seen = HashSet::new();
    let replicas: Vec<Document> = dump
        .replicas
        .iter()
        .filter(|replica| seen.insert((replica.chunk.as_str(), replica.server.as_str())))
        .map(|replica| {
            doc! {"chunk": replica.chunk.as_str(), "server": &replica.server, "size": int(replica.size), "seq": 0_i64}
        })
        .collect();
    tx.insert_many(REPLICAS, &replicas)?;
    let fences: Vec<Document> = dump
        .fences
        .iter()
        .map(|fence| doc! {"_id": fence.path.as_str(), "fence": int(fence.fence)})
        .collect();
    tx.insert_many(LOCK_GRANTS, &fences)?;
    // The latest grant of every path is kept: the next grant goes above them all.
    let last_fence = dump.fences.iter().map(|fence| fence.fence).max().unwrap_or(0);
    tx.raise_counter(FENCE_COUNTER, last_fence)?;
    super::namespace::add_missing_slots(tx)
}

/// An import's entries on MongoDB: new inodes are gathered, to be
/// inserted at once.
struct Import<'a, 't> {
    tx: &'a mut Tx<'t>,
    next_id: i64,
    nodes: Vec<Inode>,
}

impl EntryRows for Import<'_, '_> {
    fn set_attributes(&mut self, id: i64, entry: &DumpEntry) -> StoreResult<()> {
        self.tx.update(
            INODES,
            doc! {"_id": id},
            doc! {"$set": {
                "owner_uid": int(entry.owner_uid),
                "owner_name": &entry.owner_name,
                "mode": int(u64::from(entry.mode)),
                "mtime_ms": int(entry.mtime_ms),
                "ctime_ms": int(entry.ctime()),
                "version": int(entry.version),
            }, "$inc": {"seq": 1_i64}},
        )?;
        Ok(())
    }

    fn set_local_owner(&mut self, id: i64, local_owner: &dfs_proto::namespace::LocalOwner) -> StoreResult<()> {
        if let Some(node) = self.nodes.iter_mut().rev().find(|node| node.id == id) {
            node.local_owner = Some(local_owner.clone());
            return Ok(());
        }
        // `/` and `/home`, which the store has already.
        let owner = mongodb::bson::to_bson(local_owner).map_err(|error| super::bad("local owner", error))?;
        self.tx
            .update(INODES, doc! {"_id": id}, doc! {"$set": {"local_owner": owner}})?;
        Ok(())
    }

    fn set_nlink(&mut self, id: i64, nlink: u64) -> StoreResult<()> {
        if let Some(node) = self.nodes.iter_mut().rev().find(|node| node.id == id) {
            node.nlink = nlink;
        }
        Ok(())
    }

    fn insert_entry(&mut self, parent: i64, name: &str, entry: &DumpEntry, link_to: Option<i64>) -> StoreResult<i64> {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.push(Inode {
            id,
            parent,
            name: name.to_string(),
            kind: entry.kind,
            owner_uid: entry.owner_uid,
            owner_name: entry.owner_name.clone(),
            mode: entry.mode,
            size: entry.size,
            mtime_ms: entry.mtime_ms,
            ctime_ms: Some(entry.ctime()),
            version: entry.version,
            chunks: entry.chunks.clone(),
            data: entry.inline.as_deref().map(super::namespace::binary),
            attributes: entry.attributes.clone(),
            seq: 0,
            link_to,
            nlink: 1,
            local_owner: None,
        });
        Ok(id)
    }
}

impl DumpStore for MongoStore {
    fn export(&self) -> StoreResult<Dump> {
        self.read(export_in)
    }

    fn import(&self, dump: &Dump) -> StoreResult<()> {
        self.write(|tx| import_in(tx, dump))
    }
}
