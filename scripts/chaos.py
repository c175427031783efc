#!/usr/bin/env python3
"""A fault campaign: writers and readers through the real `dfs` command against
`dfs up --file-servers 4`, while a seeded random schedule kill -9s every kind
of service (the supervisor restarts them), SIGSTOPs file servers for a few
seconds, and flips bytes in the chunk files of one file server.

Run by scripts/chaos.sh (which builds `dfs`); see `--help`.

What it counts:
- faults: injected, by kind;
- acked: puts that succeeded (the client said the file is durable);
- refused: puts and reads that failed (with the first line of each kind of error);
- lost: an acknowledged write not read back whole after the campaign, once
  the cluster has healed (every chunk back to full replication);
- wrong: a read that returned bytes other than the last acknowledged write
  of the file (or a write still in flight, or one that failed: a write whose
  answer was lost may have been applied).

Each writer owns its files, so the writes to one file are sequential and
"the last acknowledged write" is well defined; every acknowledged put is
read back at once by its writer, and readers read any file at any time.
Exit status 1 if anything was lost or wrong, or the cluster did not heal.
The seed fixes the schedule of faults and every file's content; a failure is
replayed with the same `--seed` (timing still differs from run to run).
"""

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter


def log(message):
    print(f"chaos: {message}", file=sys.stderr, flush=True)


class Cluster:
    def __init__(self, dfs, workdir, file_servers, chunk_size):
        self.dfs, self.workdir = dfs, workdir
        self.data = os.path.join(workdir, "data")
        self.config = os.path.join(workdir, "config")
        self.log = open(os.path.join(workdir, "up.log"), "wb")
        self.process = subprocess.Popen(
            [dfs, "up", "--port=0", f"--data-dir={self.data}", f"--file-servers={file_servers}",
             f"--chunk-size={chunk_size}", "--heartbeat-timeout=4"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
        )
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"chaos: dfs up printed no banner; see {workdir}/up.log")
        self.banner = json.loads(line)
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        self.url = self.banner["directory_url"]
        self.services = ["directory", "auth"] + [f"file-{i + 1}" for i in range(file_servers)]

    def env(self):
        env = dict(os.environ, DFS_CONFIG_DIR=self.config)
        for name in ["DFS_URL", "DFS_CA_CERT", "DFS_RETRY_FOR", "DFS_REQUEST_ID"]:
            env.pop(name, None)
        return env

    def run(self, args, stdin=b"", timeout=120):
        """`dfs ARGS` -> (exit code, stdout, stderr)."""
        try:
            done = subprocess.run(
                [self.dfs, "--url", self.url, "--quiet", *args], input=stdin, capture_output=True,
                env=self.env(), timeout=timeout,
            )
            return done.returncode, done.stdout, done.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            return -1, b"", f"dfs {' '.join(args)}: no answer within {timeout} s"

    def pid(self, service):
        with open(os.path.join(self.data, f"{service}.pid")) as file:
            return int(file.read().strip())

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Ledger:
    """Every write of every file, in order, and what happened to it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.writes = {}  # path -> [{"hash", "started", "ended", "acked"}]
        self.counts = Counter()
        self.errors = Counter()

    def begin(self, path, digest):
        with self.lock:
            entry = {"hash": digest, "started": time.monotonic(), "ended": None, "acked": False}
            self.writes.setdefault(path, []).append(entry)
            return entry

    def end(self, entry, acked):
        with self.lock:
            entry["ended"] = time.monotonic()
            entry["acked"] = acked

    def allowed(self, path, read_started, read_ended):
        """What a read of `path` over [read_started, read_ended] may return:
        the last write acknowledged before it started, and every later write
        that started before it ended (acknowledged, failed or in flight)."""
        with self.lock:
            history = list(self.writes.get(path, []))
        last = None
        for index, write in enumerate(history):
            if write["acked"] and write["ended"] is not None and write["ended"] < read_started:
                last = index
        start = 0 if last is None else last
        allowed = {write["hash"] for write in history[start:] if write["started"] < read_ended}
        return allowed, last is not None

    def note(self, kind, error=None):
        with self.lock:
            self.counts[kind] += 1
            if error:
                first = error.strip().splitlines()[-1] if error.strip() else "(no message)"
                self.errors[f"{kind}: {shorten(first)}"] += 1


def shorten(message):
    """An error line with its varying parts (ports, ids) blurred, for counting by kind."""
    import re

    message = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", message)
    message = re.sub(r"\b[0-9a-f]{16,}\b", "ID", message)
    return message[:160]


def content(seed, writer, sequence, rng):
    """Deterministic bytes for one write: small (inline) or a few chunks."""
    size = rng.choice([1_000, 30_000, 100_000, 300_000, 700_000])
    block = hashlib.blake2b(f"{seed}/{writer}/{sequence}".encode()).digest()
    repeats = size // len(block) + 1
    data = bytearray((block * repeats)[:size])
    # Vary every 64 bytes so chunks do not repeat within or across files.
    for offset in range(0, size, 64):
        data[offset] = (offset // 64 + sequence * 7 + writer) & 0xFF
    return bytes(data)


def writer_loop(cluster, ledger, seed, writer, files, stop):
    rng = random.Random(f"{seed}/writer/{writer}")
    sequence = 0
    while not stop.is_set():
        path = f"/home/admin/chaos/w{writer}/f{rng.randrange(files)}"
        data = content(seed, writer, sequence, rng)
        sequence += 1
        digest = hashlib.sha256(data).hexdigest()
        entry = ledger.begin(path, digest)
        code, _, error = cluster.run(["put", "-", path], data)
        ledger.end(entry, code == 0)
        if code != 0:
            ledger.note("write refused", error)
            continue
        ledger.note("acked")
        # Read your own write at once.
        check_read(cluster, ledger, path, own=digest)


def check_read(cluster, ledger, path, own=None):
    started = time.monotonic()
    code, out, error = cluster.run(["--no-cache", "cat", path])
    ended = time.monotonic()
    if code != 0:
        ledger.note("read refused", error)
        return
    ledger.note("read")
    digest = hashlib.sha256(out).hexdigest()
    allowed, _ = ledger.allowed(path, started, ended)
    if own is not None:
        allowed = allowed | {own}
    if digest not in allowed:
        ledger.note("wrong", f"{path}: read {len(out)} bytes that no write of it had")


def reader_loop(cluster, ledger, seed, reader, stop):
    rng = random.Random(f"{seed}/reader/{reader}")
    while not stop.is_set():
        with ledger.lock:
            paths = sorted(path for path, writes in ledger.writes.items() if any(w["acked"] for w in writes))
        if not paths:
            time.sleep(0.2)
            continue
        check_read(cluster, ledger, rng.choice(paths))


def chunk_files(cluster, server):
    root = os.path.join(cluster.data, server, "chunks")
    found = []
    for directory, _, names in os.walk(root):
        found.extend(os.path.join(directory, name) for name in names)
    return sorted(found)


def resume(pid):
    """SIGCONT to a paused process, unless a kill -9 took it meanwhile."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def fault_loop(cluster, seed, stop, faults, corrupt_server, min_gap, max_gap):
    rng = random.Random(f"{seed}/faults")
    kinds = ["kill -9 directory", "kill -9 auth", "kill -9 file server", "SIGSTOP file server", "flip bytes"]
    while not stop.wait(rng.uniform(min_gap, max_gap)):
        kind = rng.choice(kinds)
        try:
            if kind == "kill -9 directory":
                os.kill(cluster.pid("directory"), signal.SIGKILL)
            elif kind == "kill -9 auth":
                os.kill(cluster.pid("auth"), signal.SIGKILL)
            elif kind == "kill -9 file server":
                os.kill(cluster.pid(rng.choice(cluster.services[2:])), signal.SIGKILL)
            elif kind == "SIGSTOP file server":
                pid = cluster.pid(rng.choice(cluster.services[2:]))
                os.kill(pid, signal.SIGSTOP)
                pause = rng.uniform(1, 6)
                threading.Timer(pause, resume, args=(pid,)).start()
            else:
                files = chunk_files(cluster, corrupt_server)
                if not files:
                    continue
                victim = rng.choice(files)
                with open(victim, "r+b") as file:
                    size = os.path.getsize(victim)
                    offset = rng.randrange(size) if size else 0
                    file.seek(offset)
                    byte = file.read(1)
                    file.seek(offset)
                    file.write(bytes([(byte[0] if byte else 0) ^ 0xFF]))
        except (OSError, ValueError) as error:
            log(f"{kind}: not injected ({error})")
            continue
        faults[kind] += 1


def wait_for_full_replication(cluster, limit):
    """Seconds until `dfs cluster status` shows every server live and nothing under-replicated, or None."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        code, out, _ = cluster.run(["--json", "cluster", "status"])
        if code == 0:
            status = json.loads(out)
            alive = all(server["alive"] for server in status["servers"])
            if alive and status["under_replicated_chunks"] == 0:
                return time.monotonic() - started
        time.sleep(0.5)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long faults are injected")
    parser.add_argument("--seed", type=int, default=None, help="seed of the schedule and contents (default: random)")
    parser.add_argument("--dfs", default=None, help="the dfs binary (default: $CARGO_TARGET_DIR/debug/dfs)")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--files", type=int, default=40, help="files per writer")
    parser.add_argument("--fault-gap", type=float, nargs=2, default=[2.0, 6.0], metavar=("MIN", "MAX"),
                        help="seconds between faults, uniformly distributed")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dfs = args.dfs or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "debug", "dfs")
    workdir = tempfile.mkdtemp(prefix="dfs-chaos-")
    log(f"seed {seed}, {args.seconds:.0f} s, dfs {dfs}, cluster in {workdir}")
    cluster = Cluster(dfs, workdir, file_servers=4, chunk_size=64 * 1024)
    ledger, faults, stop = Ledger(), Counter(), threading.Event()
    outcome = 1
    try:
        code, _, error = cluster.run(
            ["login", "admin", "--password-stdin"], open(cluster.banner["admin_password_file"], "rb").read()
        )
        if code != 0:
            sys.exit(f"chaos: login failed: {error}")
        for writer in range(args.writers):
            cluster.run(["mkdir", "-p", f"/home/admin/chaos/w{writer}"])
        threads = [threading.Thread(target=writer_loop, args=(cluster, ledger, seed, w, args.files, stop))
                   for w in range(args.writers)]
        threads += [threading.Thread(target=reader_loop, args=(cluster, ledger, seed, r, stop))
                    for r in range(args.readers)]
        threads.append(threading.Thread(
            target=fault_loop, args=(cluster, seed, stop, faults, cluster.services[-1], *args.fault_gap)))
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        log("faults stopped; waiting for every chunk to be back to full replication")
        healed = wait_for_full_replication(cluster, 120)
        # Every file's last acknowledged write must read back whole.
        lost = 0
        with ledger.lock:
            files = {path: list(writes) for path, writes in ledger.writes.items()}
        for path, writes in sorted(files.items()):
            acked = [index for index, write in enumerate(writes) if write["acked"]]
            if not acked:
                continue
            allowed = {write["hash"] for write in writes[acked[-1]:]}
            code, out, error = cluster.run(["--no-cache", "cat", path])
            if code != 0 or hashlib.sha256(out).hexdigest() not in allowed:
                lost += 1
                log(f"LOST {path}: {error.strip() or f'{len(out)} bytes of another content'}")
        counts = ledger.counts
        report = {
            "seed": seed,
            "seconds": args.seconds,
            "faults": sum(faults.values()),
            "faults_by_kind": dict(sorted(faults.items())),
            "acked_writes": counts["acked"],
            "reads": counts["read"],
            "refused": counts["write refused"] + counts["read refused"],
            "refused_writes": counts["write refused"],
            "refused_reads": counts["read refused"],
            "lost": lost,
            "wrong": counts["wrong"],
            "files_checked": sum(1 for writes in files.values() if any(w["acked"] for w in writes)),
            "seconds_to_full_replication": None if healed is None else round(healed, 1),
            "errors": dict(ledger.errors.most_common(12)),
        }
        print(json.dumps(report, indent=2))
        outcome = 0 if lost == 0 and counts["wrong"] == 0 and healed is not None else 1
        if outcome:
            log(f"FAILED (replay with --seed {seed}); the cluster is kept in {workdir}")
            args.keep = True
    finally:
        stop.set()
        cluster.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", workdir])
    sys.exit(outcome)


if __name__ == "__main__":
    main()
