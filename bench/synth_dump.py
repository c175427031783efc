#!/usr/bin/env python3
"""Writes a `dfs meta export` JSON document of a synthesised namespace for
bench/scale.sh: FILES files of CHUNKS chunks each, spread over DIRS
directories under /bench, every chunk with REPLICAS replica records on
servers s1..sN (records only: no byte of any chunk exists).

    python3 bench/synth_dump.py FILES CHUNKS DIRS REPLICAS SERVERS [--no-users] > dump.json

With --no-users the dump has no user (the entries are owned by uid 1), so
the first start of a cluster on it creates `admin` with a password of its
own (written to DATA_DIR/admin-password), as on an empty store.

Chunk ids are BLAKE3-shaped (64 hex digits, from SHA-256 of a counter), so
they spread over the id space like real ones. Streams its output: memory
stays small whatever the counts.
"""
import hashlib
import json
import sys

files, chunks, dirs, replicas, servers = (int(arg) for arg in sys.argv[1:6])
no_users = "--no-users" in sys.argv[6:]
out = sys.stdout
now_ms = 1_760_000_000_000
if no_users:
    out.write('{"format":1,"next_uid":2,"users":[],')
else:
    out.write('{"format":1,"next_uid":2,"users":[{"uid":1,"name":"admin","password_hash":"x","admin":true,"created_at":0}],')
out.write('"entries":[')


def entry(path, kind, size=0, chunk_refs=()):
    return json.dumps({
        "path": path, "kind": kind, "owner_uid": 1, "owner_name": "admin",
        "mode": 493 if kind == "dir" else 420, "size": size, "mtime_ms": now_ms,
        "version": 1, "chunks": list(chunk_refs),
    }, separators=(",", ":"))


def chunk_id(n):
    return hashlib.sha256(n.to_bytes(8, "little")).hexdigest()


out.write(",".join([entry("/", "dir"), entry("/bench", "dir"), entry("/home", "dir")]))
# Entries sorted by path: directories d000000.., each followed by its files.
per_dir = max(1, -(-files // dirs))
counter = 0
all_chunks = []
for d in range(dirs):
    first = d * per_dir
    if first >= files:
        break
    out.write("," + entry(f"/bench/d{d:06d}", "dir"))
    for f in range(first, min(files, first + per_dir)):
        refs = [{"id": chunk_id(counter + c), "size": 65536} for c in range(chunks)]
        counter += chunks
        out.write("," + entry(f"/bench/d{d:06d}/f{f:08d}", "file", 65536 * chunks, refs))
out.write('],"servers":[],"replicas":[')
# Replicas sorted by (chunk, server).
ids = sorted(chunk_id(n) for n in range(counter))
first = True
for cid in ids:
    for s in range(replicas):
        out.write(("" if first else ",") + '{"chunk":"%s","server":"s%d","size":65536}' % (cid, (int(cid[:8], 16) + s) % servers + 1))
        first = False
out.write('],"fences":[]}\n')
