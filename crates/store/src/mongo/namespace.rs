//! The namespace on MongoDB: one `inodes` document per entry, a file's chunk
//! list embedded in it, so a new version is one document write. The
//! primitives here serve the rules of `crate::model`; their conflict hooks
//! write what a racing transaction's checks read (see the module docs of
//! `mongo`).

use super::{
    int, is_duplicate_key, MongoStore, Tx, DIR_MOVES, DIR_SLOTS, HOME_ID, INODES, POSSESSION, REPLICAS, ROOT_ID,
    SERVERS, UPLOADS, UPLOAD_CHUNKS,
};
use crate::common::{exists, now_secs, Node};
use crate::model::namespace::NamespaceRecords;
use crate::model::{NewNode, Rows};
use crate::namespace::{
    FileContent, NamespaceCounts, NewContent, PlacedChunk, UploadRecord, DEFAULT_DIR_MODE, ROOT_OWNER_NAME,
    ROOT_OWNER_UID,
};
use crate::StoreResult;
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, LocalOwner};
use dfs_proto::path::DfsPath;
use dfs_proto::{Attributes, UnixSeconds};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Document};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One `inodes` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Inode {
    #[serde(rename = "_id")]
    pub(super) id: i64,
    /// 0 for `/`.
    pub(super) parent: i64,
    pub(super) name: String,
    pub(super) kind: EntryKind,
    pub(super) owner_uid: u64,
    pub(super) owner_name: String,
    pub(super) mode: u32,
    pub(super) size: u64,
    pub(super) mtime_ms: u64,
    /// The ctime; absent in documents written before it was kept (and by
    /// older builds): the mtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ctime_ms: Option<u64>,
    pub(super) version: u64,
    /// A file's chunks in order (left out by [`NODE_FIELDS`]).
    #[serde(default)]
    pub(super) chunks: Vec<ChunkRef>,
    /// An inline file's bytes (left out by [`NODE_FIELDS`]); a file has
    /// either these or chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<Binary>,
    /// A file version's attributes, kept as a JSON object in a string (an
    /// attribute name may hold `.` or `$`, which field names may not).
    #[serde(default, skip_serializing_if = "Attributes::is_empty", with = "attributes_json")]
    pub(super) attributes: Attributes,
    /// Bumped by every change of the entry itself, and by lock grants that
    /// read it, so racing transactions conflict (a change of its children
    /// bumps one of its entry slots instead).
    #[serde(default)]
    pub(super) seq: i64,
    /// Set on an extra name of a file (a hard link): the file's inode;
    /// such a document holds nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) link_to: Option<i64>,
    /// A file's count of names; absent in documents written before hard
    /// links: 1.
    #[serde(default = "one_link")]
    pub(super) nlink: u64,
    /// Set by a mount for its local users; absent if none (and in
    /// documents written before local owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) local_owner: Option<LocalOwner>,
}

fn one_link() -> u64 {
    1
}

/// [`Attributes`] as a JSON string (see [`crate::common::attributes_text`]).
mod attributes_json {
    use dfs_proto::Attributes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Attributes, serializer: S) -> Result<S::Ok, S::Error> {
        match crate::common::attributes_text(value) {
            Some(text) => serializer.serialize_str(&text),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        crate::common::attributes_from_text(text.as_deref()).map_err(serde::de::Error::custom)
    }
}

/// The projection of an inode without its chunk list and inline data.
fn node_fields() -> Document {
    doc! {"chunks": 0, "data": 0}
}

/// Inline bytes as stored.
pub(super) fn binary(data: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: data.to_vec(),
    }
}

impl Inode {
    pub(super) fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

impl From<Inode> for Node {
    fn from(inode: Inode) -> Self {
        Node {
            id: inode.id,
            kind: inode.kind,
            owner_uid: inode.owner_uid,
            owner_name: inode.owner_name,
            mode: inode.mode,
            size: inode.size,
            mtime_ms: inode.mtime_ms,
            ctime_ms: inode.ctime_ms.unwrap_or(inode.mtime_ms),
            version: inode.version,
            attributes: inode.attributes,
            link_to: inode.link_to,
            nlink: inode.nlink,
            local_owner: inode.local_owner,
        }
    }
}

/// First migration: `/` (inode 1) and `/home` (inode 2), owned by the first user.
pub(super) fn create_root_and_home(tx: &mut Tx<'_>) -> StoreResult<()> {
    let now_ms = int(now_secs() * 1000);
    for (id, parent, name) in [(ROOT_ID, 0, ""), (HOME_ID, ROOT_ID, "home")] {
        tx.upsert(
            INODES,
            doc! {"_id": id},
            doc! {"$setOnInsert": {
                "parent": parent, "name": name, "kind": "dir",
                "owner_uid": int(ROOT_OWNER_UID), "owner_name": ROOT_OWNER_NAME,
                "mode": int(u64::from(DEFAULT_DIR_MODE)), "size": 0_i64, "mtime_ms": now_ms.clone(),
                "version": 1_i64, "seq": 0_i64,
            }},
        )?;
    }
    tx.raise_counter(super::INODE_COUNTER, HOME_ID as u64)
}

/// Entry slot documents per directory (see the module docs of `mongo`).
pub(super) const SLOTS_PER_DIR: i64 = 16;

/// The entry slot of `name` in directory `dir`: the same in every process
/// (FNV-1a of the name), so directory services sharing a database agree.
fn slot_id(dir: i64, name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    dir * SLOTS_PER_DIR + (hash % SLOTS_PER_DIR as u64) as i64
}

/// Makes the entry slots of new directory `dir`.
fn insert_slots(tx: &mut Tx<'_>, dir: i64) -> StoreResult<()> {
    let slots: Vec<Document> = (0..SLOTS_PER_DIR)
        .map(|slot| doc! {"_id": dir * SLOTS_PER_DIR + slot, "dir": dir, "seq": 0_i64})
        .collect();
    tx.insert_many(DIR_SLOTS, &slots)
}

/// Deletes the entry slots of `dirs`, which conflicts with any transaction
/// changing an entry in one of them.
fn delete_slots(tx: &mut Tx<'_>, dirs: &[i64]) -> StoreResult<()> {
    if !dirs.is_empty() {
        tx.delete(DIR_SLOTS, doc! {"dir": {"$in": dirs}})?;
    }
    Ok(())
}

/// Writes the entry slot of `name` in `dir`, so that racing transactions
/// changing that name, or removing `dir`, conflict with this one.
pub(super) fn bump_slot(tx: &mut Tx<'_>, dir: i64, name: &str) -> StoreResult<()> {
    if !tx.update(
        DIR_SLOTS,
        doc! {"_id": slot_id(dir, name)},
        doc! {"$inc": {"seq": 1_i64}},
    )? {
        return Err(anyhow::anyhow!("directory {dir} has no entry slots (the schema migration did not run?)").into());
    }
    Ok(())
}

/// Second migration (and the end of an import): entry slots for every
/// directory that has none.
pub(super) fn add_missing_slots(tx: &mut Tx<'_>) -> StoreResult<()> {
    let dirs: Vec<Document> = tx.find(INODES, doc! {"kind": "dir"}, Document::new(), doc! {"_id": 1})?;
    let with_slots: Vec<Document> = tx.find(DIR_SLOTS, Document::new(), Document::new(), doc! {"dir": 1})?;
    let with_slots: std::collections::HashSet<i64> =
        with_slots.iter().filter_map(|slot| slot.get_i64("dir").ok()).collect();
    for dir in dirs.iter().filter_map(|dir| dir.get_i64("_id").ok()) {
        if !with_slots.contains(&dir) {
            insert_slots(tx, dir)?;
        }
    }
    Ok(())
}

/// One `uploads` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadDoc {
    #[serde(rename = "_id")]
    id: String,
    path: DfsPath,
    owner_uid: u64,
    owner_name: String,
    no_clobber: bool,
    mode: Option<u32>,
    chunk_size: u64,
    replication: u32,
    created_at: u64,
    expires_at: u64,
}

impl From<UploadDoc> for UploadRecord {
    fn from(upload: UploadDoc) -> Self {
        UploadRecord {
            id: upload.id,
            path: upload.path,
            owner_uid: upload.owner_uid,
            owner_name: upload.owner_name,
            no_clobber: upload.no_clobber,
            mode: upload.mode,
            chunk_size: upload.chunk_size,
            replication: upload.replication,
            created_at: upload.created_at,
            expires_at: upload.expires_at,
        }
    }
}

impl From<&UploadRecord> for UploadDoc {
    fn from(upload: &UploadRecord) -> Self {
        UploadDoc {
            id: upload.id.clone(),
            path: upload.path.clone(),
            owner_uid: upload.owner_uid,
            owner_name: upload.owner_name.clone(),
            no_clobber: upload.no_clobber,
            mode: upload.mode,
            chunk_size: upload.chunk_size,
            replication: upload.replication,
            created_at: upload.created_at,
            expires_at: upload.expires_at,
        }
    }
}

/// Chunk ids of a group-by-chunk aggregation.
fn chunk_id(raw: &str) -> StoreResult<ChunkId> {
    ChunkId::parse(raw).map_err(|error| super::bad("chunk id", error))
}

/// The entry with inode `id`, without its content.
fn inode(tx: &mut Tx<'_>, filter: Document) -> StoreResult<Option<Node>> {
    let found: Option<Inode> = tx.find_first(INODES, filter, Document::new(), node_fields())?;
    Ok(found.map(Node::from))
}

/// Entries matching `filter` as (name, node), sorted by `sort`.
fn entries(tx: &mut Tx<'_>, filter: Document, sort: Document) -> StoreResult<Vec<(String, Node)>> {
    let found: Vec<Inode> = tx.find(INODES, filter, sort, node_fields())?;
    Ok(found
        .into_iter()
        .map(|inode| (inode.name.clone(), Node::from(inode)))
        .collect())
}

/// The whole document of inode `id`, content included.
/// One chunk of an upload's chunk list posted in pages: `{_id: "UPLOAD/IDX", upload, idx, chunk}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StagedChunk {
    #[serde(rename = "_id")]
    id: String,
    upload: String,
    idx: i64,
    chunk: ChunkRef,
}

/// The whole chunk list staged for `upload`, in order: it goes into one
/// inode document, so a file on MongoDB holds as many chunks as a
/// document's 16 MiB allow (about 150,000).
fn staged_list(tx: &mut Tx<'_>, upload: &str) -> StoreResult<Vec<ChunkRef>> {
    let mut chunks = Vec::new();
    loop {
        let page = tx.staged_upload_chunks(upload, chunks.len() as u64, 10_000)?;
        if page.is_empty() {
            return Ok(chunks);
        }
        chunks.extend(page.into_iter().map(|(_, chunk)| chunk));
    }
}

/// Queues for garbage collection the chunks staged for `uploads`, and forgets them.
fn forget_staged(tx: &mut Tx<'_>, uploads: &[String]) -> StoreResult<()> {
    if uploads.is_empty() {
        return Ok(());
    }
    let filter = doc! {"upload": {"$in": uploads.to_vec()}};
    let staged: Vec<StagedChunk> = tx.find(UPLOAD_CHUNKS, filter.clone(), Document::new(), Document::new())?;
    let ids: Vec<&str> = staged.iter().map(|staged| staged.chunk.id.as_str()).collect();
    super::repair::enqueue(tx, crate::repair::CheckQueue::Collect, &ids, now_secs())?;
    tx.delete(UPLOAD_CHUNKS, filter)?;
    Ok(())
}

fn whole(tx: &mut Tx<'_>, id: i64) -> StoreResult<Inode> {
    tx.find_one(INODES, doc! {"_id": id})?
        .ok_or_else(|| anyhow::anyhow!("inode {id} is missing").into())
}

/// The namespace primitives (see [`Rows`]), with the hooks that make
/// racing transactions write one document.
impl Rows for Tx<'_> {
    fn node(&mut self, id: i64) -> StoreResult<Node> {
        inode(self, doc! {"_id": id})?.ok_or_else(|| anyhow::anyhow!("inode {id} is missing").into())
    }

    fn child(&mut self, parent: i64, name: &str) -> StoreResult<Option<Node>> {
        inode(self, doc! {"parent": parent, "name": name})
    }

    fn children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(self, doc! {"parent": dir}, doc! {"name": 1})
    }

    fn children_page(&mut self, dir: i64, after: Option<&str>, limit: usize) -> StoreResult<Vec<(String, Node)>> {
        let found: Vec<Inode> = self.find_limited(
            INODES,
            doc! {"parent": dir, "name": {"$gt": after.unwrap_or("")}},
            doc! {"name": 1},
            node_fields(),
            limit,
        )?;
        Ok(found
            .into_iter()
            .map(|inode| (inode.name.clone(), Node::from(inode)))
            .collect())
    }

    fn subdirectories(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(self, doc! {"parent": dir, "kind": "dir"}, Document::new())
    }

    /// One aggregation for them all, on the partial index `dirs_by_parent`.
    fn subdirectory_counts(&mut self, dirs: &[i64]) -> StoreResult<Vec<u64>> {
        let counted = self.aggregate(
            INODES,
            vec![
                doc! {"$match": {"parent": {"$in": dirs}, "kind": "dir"}},
                doc! {"$group": {"_id": "$parent", "n": {"$sum": 1_i64}}},
            ],
        )?;
        let mut subdirectories: HashMap<i64, u64> = HashMap::new();
        for group in counted {
            // The server may answer an integer in 32 bits.
            let dir = match group.get("_id") {
                Some(mongodb::bson::Bson::Int64(dir)) => *dir,
                Some(mongodb::bson::Bson::Int32(dir)) => i64::from(*dir),
                other => return Err(super::bad("parent", format!("{other:?}"))),
            };
            subdirectories.insert(dir, group_count(&group)?);
        }
        Ok(dirs
            .iter()
            .map(|dir| subdirectories.get(dir).copied().unwrap_or(0))
            .collect())
    }

    fn has_children(&mut self, dir: i64) -> StoreResult<bool> {
        Ok(self
            .find_first::<Document>(INODES, doc! {"parent": dir}, Document::new(), doc! {"_id": 1})?
            .is_some())
    }

    /// The id comes from its counter outside the transaction (see the
    /// module docs of `mongo`); a directory gets its entry slots.
    fn insert_node(&mut self, parent: i64, name: &str, path: &DfsPath, new: NewNode<'_>) -> StoreResult<Node> {
        let (chunks, data) = match new.content {
            Some(NewContent::Chunks(chunks)) => (chunks.to_vec(), None),
            Some(NewContent::Staged { upload, .. }) => (staged_list(self, upload)?, None),
            Some(NewContent::Inline(data)) => (Vec::new(), Some(binary(data))),
            None => (Vec::new(), None),
        };
        let node = Inode {
            id: self.next_inode_id()?,
            parent,
            name: name.to_string(),
            kind: new.kind,
            owner_uid: new.owner.uid,
            owner_name: new.owner.name.clone(),
            mode: new.mode,
            size: new.size(),
            mtime_ms: new.mtime_ms,
            ctime_ms: Some(new.mtime_ms),
            version: 1,
            chunks,
            data,
            attributes: new.attributes.clone(),
            seq: 0,
            local_owner: new.local_owner.cloned(),
            link_to: new.link_to,
            nlink: 1,
        };
        self.insert(INODES, &node)
            .map_err(|error| if is_duplicate_key(&error) { exists(path) } else { error })?;
        if node.is_dir() {
            insert_slots(self, node.id)?;
        }
        Ok(Node::from(node))
    }

    /// Bumps the entry's slot (so racing changes of the name, or a removal
    /// of the directory, conflict) and raises the directory's mtime once
    /// committed.
    fn entry_changed(&mut self, dir: i64, name: &str, now_ms: u64) -> StoreResult<()> {
        bump_slot(self, dir, name)?;
        self.dir_changed(dir, now_ms);
        Ok(())
    }

    fn replace_content(
        &mut self,
        file: &Node,
        content: NewContent<'_>,
        attributes: &Attributes,
        now_ms: u64,
    ) -> StoreResult<Node> {
        let size = content.size();
        let staged;
        let (chunks, data) = match content {
            NewContent::Chunks(chunks) => (chunks, None),
            NewContent::Inline(data) => (&[][..], Some(data)),
            NewContent::Staged { upload, .. } => {
                staged = staged_list(self, upload)?;
                (&staged[..], None)
            }
        };
        let stored = mongodb::bson::to_bson(chunks).map_err(|error| super::bad("chunk list", error))?;
        let mut set = doc! {"size": int(size), "mtime_ms": int(now_ms), "ctime_ms": int(now_ms), "chunks": stored};
        let mut update = doc! {"$inc": {"version": 1_i64, "seq": 1_i64}};
        let mut unset = Document::new();
        match data {
            Some(data) => drop(set.insert("data", binary(data))),
            None => drop(unset.insert("data", "")),
        }
        match crate::common::attributes_text(attributes) {
            Some(text) => drop(set.insert("attributes", text)),
            None => drop(unset.insert("attributes", "")),
        }
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        update.insert("$set", set);
        super::repair::collect_chunks_of(self, doc! {"_id": file.id})?;
        self.update(INODES, doc! {"_id": file.id}, update)?;
        Ok(Node {
            size,
            mtime_ms: now_ms,
            ctime_ms: now_ms,
            version: file.version + 1,
            attributes: attributes.clone(),
            ..file.clone()
        })
    }

    fn move_node(&mut self, node: &Node, to_parent: i64, to_name: &str, now_ms: u64) -> StoreResult<()> {
        self.update(
            INODES,
            doc! {"_id": node.id},
            doc! {"$set": {"parent": to_parent, "name": to_name, "ctime_ms": int(now_ms)}, "$inc": {"seq": 1_i64}},
        )?;
        Ok(())
    }

    /// Deleting the entry slots of every directory of the subtree conflicts
    /// with any racing transaction that creates below it (it bumps a slot).
    fn delete_entry(&mut self, node: &Node, subtree: Option<&[i64]>) -> StoreResult<()> {
        match subtree {
            Some(dirs) => {
                super::repair::collect_chunks_of(self, doc! {"parent": {"$in": dirs.to_vec()}, "kind": "file"})?;
                self.delete(
                    INODES,
                    doc! {"$or": [{"_id": node.id}, {"parent": {"$in": dirs.to_vec()}}]},
                )?;
                delete_slots(self, dirs)
            }
            None => {
                if !node.is_dir() {
                    super::repair::collect_chunks_of(self, doc! {"_id": node.id})?;
                }
                self.delete(INODES, doc! {"_id": node.id})?;
                if node.is_dir() {
                    delete_slots(self, &[node.id])?;
                }
                Ok(())
            }
        }
    }

    fn set_mode(&mut self, node: &Node, mode: u32, now_ms: u64) -> StoreResult<Node> {
        self.update(
            INODES,
            doc! {"_id": node.id},
            doc! {"$set": {"mode": int(u64::from(mode)), "ctime_ms": int(now_ms)}, "$inc": {"seq": 1_i64}},
        )?;
        Ok(Node {
            mode,
            ctime_ms: now_ms,
            ..node.clone()
        })
    }

    fn set_local_owner(&mut self, node: &Node, local_owner: Option<&LocalOwner>, now_ms: u64) -> StoreResult<Node> {
        let update = match local_owner {
            Some(owner) => doc! {
                "$set": {"local_owner": mongodb::bson::to_bson(owner).map_err(|error| super::bad("local owner", error))?,
                         "ctime_ms": int(now_ms)},
                "$inc": {"seq": 1_i64},
            },
            None => doc! {"$unset": {"local_owner": ""}, "$set": {"ctime_ms": int(now_ms)}, "$inc": {"seq": 1_i64}},
        };
        self.update(INODES, doc! {"_id": node.id}, update)?;
        Ok(Node {
            local_owner: local_owner.cloned(),
            ctime_ms: now_ms,
            ..node.clone()
        })
    }

    fn set_owner(&mut self, node: &Node, owner_uid: u64, owner_name: &str, now_ms: u64) -> StoreResult<Node> {
        self.update(
            INODES,
            doc! {"_id": node.id},
            doc! {
                "$set": {"owner_uid": int(owner_uid), "owner_name": owner_name, "ctime_ms": int(now_ms)},
                "$inc": {"seq": 1_i64},
            },
        )?;
        Ok(Node {
            owner_uid,
            owner_name: owner_name.to_string(),
            ctime_ms: now_ms,
            ..node.clone()
        })
    }

    fn set_nlink(&mut self, node: &Node, nlink: u64, now_ms: u64) -> StoreResult<Node> {
        self.update(
            INODES,
            doc! {"_id": node.id},
            doc! {"$set": {"nlink": int(nlink), "ctime_ms": int(now_ms)}, "$inc": {"seq": 1_i64}},
        )?;
        Ok(Node {
            nlink,
            ctime_ms: now_ms,
            ..node.clone()
        })
    }

    fn extra_name(&mut self, inode: i64) -> StoreResult<Option<(i64, String, Node)>> {
        let found: Option<Inode> = self.find_first(INODES, doc! {"link_to": inode}, doc! {"_id": 1}, node_fields())?;
        Ok(found.map(|inode| (inode.parent, inode.name.clone(), Node::from(inode))))
    }

    fn linked_children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(
            self,
            doc! {"parent": dir, "kind": "file", "$or": [{"link_to": {"$exists": true}}, {"nlink": {"$gt": 1_i64}}]},
            Document::new(),
        )
    }

    fn set_mtime(&mut self, node: &Node, mtime_ms: u64, now_ms: u64) -> StoreResult<Node> {
        self.update(
            INODES,
            doc! {"_id": node.id},
            doc! {"$set": {"mtime_ms": int(mtime_ms), "ctime_ms": int(now_ms)}, "$inc": {"seq": 1_i64}},
        )?;
        Ok(Node {
            mtime_ms,
            ctime_ms: now_ms,
            ..node.clone()
        })
    }

    /// The same snapshot, now with the chunk list or the data.
    fn content(&mut self, file: &Node) -> StoreResult<FileContent> {
        let file = whole(self, file.id)?;
        Ok(match file.data {
            Some(data) => FileContent::Inline(data.bytes),
            None => FileContent::Chunks(file.chunks),
        })
    }

    fn chunk_list(&mut self, file: &Node) -> StoreResult<Vec<ChunkRef>> {
        Ok(whole(self, file.id)?.chunks)
    }

    fn chunk_page(&mut self, file: &Node, offset: u64, limit: usize) -> StoreResult<Vec<PlacedChunk>> {
        let mut start = 0;
        Ok(whole(self, file.id)?
            .chunks
            .into_iter()
            .map(|chunk| {
                let placed = PlacedChunk { offset: start, chunk };
                start += placed.chunk.size;
                placed
            })
            .skip_while(|placed| placed.offset + placed.chunk.size <= offset)
            .take(limit)
            .collect())
    }

    fn replica_counts(&mut self, chunks: &[ChunkRef]) -> StoreResult<Vec<u64>> {
        let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
        let counted = self.aggregate(
            REPLICAS,
            vec![
                doc! {"$match": {"chunk": {"$in": ids}}},
                doc! {"$group": {"_id": "$chunk", "n": {"$sum": 1_i64}}},
            ],
        )?;
        let mut recorded: HashMap<String, u64> = HashMap::new();
        for group in counted {
            let chunk = group
                .get_str("_id")
                .map_err(|error| super::bad("replica count", error))?;
            recorded.insert(chunk.to_string(), group_count(&group)?);
        }
        Ok(chunks
            .iter()
            .map(|chunk| recorded.get(chunk.id.as_str()).copied().unwrap_or(0))
            .collect())
    }

    fn insert_upload(&mut self, upload: &UploadRecord) -> StoreResult<()> {
        self.insert(UPLOADS, &UploadDoc::from(upload))
    }

    fn live_upload(&mut self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        Ok(self
            .find_one::<UploadDoc>(UPLOADS, doc! {"_id": id, "expires_at": {"$gt": int(now)}})?
            .map(UploadRecord::from))
    }

    fn forget_upload(&mut self, id: &str) -> StoreResult<()> {
        self.delete(UPLOADS, doc! {"_id": id})?;
        self.delete(UPLOAD_CHUNKS, doc! {"upload": id})?;
        Ok(())
    }

    fn stage_upload_chunks(&mut self, upload: &str, first: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let end = first + chunks.len() as u64;
        self.delete(
            UPLOAD_CHUNKS,
            doc! {"upload": upload, "idx": {"$gte": int(first), "$lt": int(end)}},
        )?;
        let staged: Vec<StagedChunk> = (first..)
            .zip(chunks)
            .map(|(idx, chunk)| StagedChunk {
                id: format!("{upload}/{idx}"),
                upload: upload.to_string(),
                idx: idx as i64,
                chunk: chunk.clone(),
            })
            .collect();
        self.insert_many(UPLOAD_CHUNKS, &staged)
    }

    fn staged_upload_chunks(&mut self, upload: &str, from: u64, limit: usize) -> StoreResult<Vec<(u64, ChunkRef)>> {
        let staged: Vec<StagedChunk> = self.find_limited(
            UPLOAD_CHUNKS,
            doc! {"upload": upload, "idx": {"$gte": int(from)}},
            doc! {"idx": 1},
            Document::new(),
            limit,
        )?;
        Ok(staged
            .into_iter()
            .map(|staged| (staged.idx as u64, staged.chunk))
            .collect())
    }

    /// Two such moves checked on separate snapshots could each move a
    /// directory under the other; this shared counter makes them conflict.
    fn directory_moved(&mut self) -> StoreResult<()> {
        self.next_in_transaction(DIR_MOVES)?;
        Ok(())
    }

    /// Bumps the replica documents counted, so that garbage collection
    /// forgetting one of them meanwhile conflicts with this transaction.
    fn replicas_counted(&mut self, chunks: &[ChunkRef]) -> StoreResult<()> {
        let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
        self.update_many(REPLICAS, doc! {"chunk": {"$in": ids}}, doc! {"$inc": {"seq": 1_i64}})?;
        Ok(())
    }
}

/// The calls that decide nothing (see [`NamespaceRecords`]).
impl NamespaceRecords for MongoStore {
    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        let upload = self
            .collection::<UploadDoc>(UPLOADS)
            .find_one(doc! {"_id": id, "expires_at": {"$gt": int(now)}})
            .run()?;
        Ok(upload.map(UploadRecord::from))
    }

    fn delete_upload(&self, id: &str) -> StoreResult<bool> {
        self.write(|tx| {
            forget_staged(tx, &[id.to_string()])?;
            Ok(tx.delete(UPLOADS, doc! {"_id": id})? > 0)
        })
    }

    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| {
            let expired = doc! {"expires_at": {"$lte": int(now)}};
            let ids: Vec<Document> = tx.find(UPLOADS, expired.clone(), Document::new(), doc! {"_id": 1})?;
            let ids: Vec<String> = ids
                .iter()
                .filter_map(|upload| upload.get_str("_id").ok().map(str::to_string))
                .collect();
            forget_staged(tx, &ids)?;
            tx.delete(UPLOADS, expired)
        })
    }

    fn record_replicas(&self, chunk: &ChunkId, size: u64, servers: &[String]) -> StoreResult<()> {
        self.write(|tx| {
            for server in servers {
                tx.upsert(
                    REPLICAS,
                    doc! {"chunk": chunk.as_str(), "server": server},
                    doc! {"$setOnInsert": {"size": int(size), "seq": 0_i64}},
                )?;
            }
            Ok(())
        })
    }

    fn record_possession(&self, uid: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        self.write(|tx| {
            for chunk in chunks {
                tx.upsert(
                    POSSESSION,
                    doc! {"_id": possession_key(uid, &chunk.id)},
                    doc! {"$setOnInsert": {"size": int(chunk.size)}},
                )?;
            }
            Ok(())
        })
    }

    fn possessed(&self, uid: u64, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, u64>> {
        let keys: Vec<String> = chunks.iter().map(|chunk| possession_key(uid, chunk)).collect();
        self.read(|tx| {
            let rows: Vec<Document> = tx.find(
                POSSESSION,
                doc! {"_id": {"$in": keys.clone()}},
                doc! {"_id": 1},
                Document::new(),
            )?;
            let mut found = HashMap::new();
            for row in rows {
                let key = row.get_str("_id").map_err(|error| super::bad("possession", error))?;
                let size = row.get_i64("size").map_err(|error| super::bad("possession", error))?;
                let chunk = key.split_once('/').map_or(key, |(_, chunk)| chunk);
                found.insert(chunk_id(chunk)?, size.max(0) as u64);
            }
            Ok(found)
        })
    }

    fn replicas(&self, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, Vec<String>>> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.read(|tx| {
            let rows: Vec<Document> = tx.find(
                REPLICAS,
                doc! {"chunk": {"$in": ids.clone()}},
                doc! {"chunk": 1, "server": 1},
                doc! {"chunk": 1, "server": 1},
            )?;
            let mut found: HashMap<ChunkId, Vec<String>> = HashMap::new();
            for row in rows {
                let (chunk, server) = replica_row(&row)?;
                found.entry(chunk_id(chunk)?).or_default().push(server.to_string());
            }
            Ok(found)
        })
    }

    fn referenced_chunks(&self) -> StoreResult<Vec<(ChunkId, Vec<String>)>> {
        self.read(|tx| {
            let referenced = tx.aggregate(
                INODES,
                vec![
                    doc! {"$match": {"kind": "file"}},
                    doc! {"$unwind": "$chunks"},
                    doc! {"$group": {"_id": "$chunks.id"}},
                    doc! {"$sort": {"_id": 1}},
                ],
            )?;
            let rows: Vec<Document> = tx.find(
                REPLICAS,
                Document::new(),
                doc! {"chunk": 1, "server": 1},
                doc! {"chunk": 1, "server": 1},
            )?;
            let mut holders: HashMap<String, Vec<String>> = HashMap::new();
            for row in &rows {
                let (chunk, server) = replica_row(row)?;
                holders.entry(chunk.to_string()).or_default().push(server.to_string());
            }
            referenced
                .iter()
                .map(|group| {
                    let chunk = group.get_str("_id").map_err(|error| super::bad("chunk id", error))?;
                    Ok((chunk_id(chunk)?, holders.remove(chunk).unwrap_or_default()))
                })
                .collect()
        })
    }

    fn upsert_server(&self, server: &ServerRef) -> StoreResult<()> {
        self.write(|tx| tx.upsert(SERVERS, doc! {"_id": &server.id}, doc! {"$set": {"url": &server.url}}))
    }

    fn servers(&self) -> StoreResult<Vec<ServerRef>> {
        self.read(|tx| {
            let rows: Vec<Document> = tx.find(SERVERS, Document::new(), doc! {"_id": 1}, Document::new())?;
            rows.iter()
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
                .collect()
        })
    }

    fn counts(&self) -> StoreResult<NamespaceCounts> {
        self.read(|tx| {
            let mut counts = NamespaceCounts::default();
            let kinds = tx.aggregate(INODES, vec![doc! {"$group": {"_id": "$kind", "n": {"$sum": 1_i64}}}])?;
            for group in kinds {
                match group.get_str("_id") {
                    Ok("file") => counts.files = group_count(&group)?,
                    Ok("dir") => counts.directories = group_count(&group)?,
                    _ => {}
                }
            }
            let chunks = tx.aggregate(
                INODES,
                vec![
                    doc! {"$unwind": "$chunks"},
                    doc! {"$group": {"_id": "$chunks.id"}},
                    doc! {"$group": {"_id": null, "n": {"$sum": 1_i64}}},
                ],
            )?;
            counts.chunks = match chunks.first() {
                Some(group) => group_count(group)?,
                None => 0,
            };
            let servers = tx.aggregate(
                REPLICAS,
                vec![doc! {"$group": {"_id": "$server", "n": {"$sum": 1_i64}}}],
            )?;
            for group in servers {
                let server = group.get_str("_id").map_err(|error| super::bad("replica", error))?;
                counts
                    .replicas_per_server
                    .insert(server.to_string(), group_count(&group)?);
            }
            Ok(counts)
        })
    }
}

/// The `n` of a `$group` stage.
pub(super) fn group_count(group: &Document) -> StoreResult<u64> {
    match group.get("n") {
        Some(mongodb::bson::Bson::Int64(n)) => Ok(*n as u64),
        Some(mongodb::bson::Bson::Int32(n)) => Ok(*n as u64),
        other => Err(super::bad("count", format!("{other:?}"))),
    }
}

/// (chunk, server) of a `replicas` document.
/// The `_id` of a possession document: one per user and chunk.
fn possession_key(uid: u64, chunk: &ChunkId) -> String {
    format!("{uid}/{}", chunk.as_str())
}

pub(super) fn replica_row(row: &Document) -> StoreResult<(&str, &str)> {
    let chunk = row.get_str("chunk").map_err(|error| super::bad("replica", error))?;
    let server = row.get_str("server").map_err(|error| super::bad("replica", error))?;
    Ok((chunk, server))
}
