#!/usr/bin/env python3
"""Turns the results of bench/run.sh (a TSV: system, workload, figure, unit,
note) into bench/results/peers.md (a Markdown table with ratios and each
system's durability at acknowledgement) and bench/results/peers.svg (a bar
chart, one panel per workload, written by hand: no dependencies)."""

import argparse
import datetime
import html
import os
import platform

# The durability of DFS's W2 (4 KiB files, stored inline) and W3 (metadata)
# figures, whatever the replication factor: they live only in the metadata
# database, one copy on SQLite.
INLINE_DURABILITY = "fsync metadata (SQLite): 1 copy, not replicated"

SYSTEMS = {
    # name: (shown as, durability at acknowledgement in short, in full, what is synced:
    #        0 nothing, 1 data only, 2 data and metadata)
    "baseline": ("machine baseline", "", "", 0),
    "local": ("local disk", "none", "the posix driver on a directory of the local disk: page cache only", 0),
    "local-fsync": (
        "local disk, fsync",
        "fsync file + dir",
        "the posix driver on local disk, with an fsync of each file and of its directory (mkdir: the parent)",
        2,
    ),
    "dfs": (
        "DFS r1",
        "fsync data + metadata",
        "every chunk file and its directory fsynced, then the metadata committed in SQLite "
        "(WAL, synchronous=FULL: the WAL is fsynced per commit)",
        2,
    ),
    "dfs-r3": (
        "DFS r3",
        "fsync data + metadata, 3 replicas",
        "as DFS r1, on all 3 replicas before the receipt, for chunked files (W1); files of at most 64 KiB "
        "(W2's 4 KiB files) are stored inline in the directory service's SQLite database, like all metadata "
        "(W3): one copy, on its disk, whatever the replication factor",
        2,
    ),
    "dfs-mount": (
        "DFS r1 mount",
        "fsync data; metadata at fsync",
        "as DFS r1, through `dfs mount` (FUSE) with the posix driver and cp, as JuiceFS: a file is uploaded "
        "whole at its close (close-to-open), names and attributes cached by the kernel while the watch is connected; "
        "chunks are fsynced before their commit, a namespace change is answered once committed and its log synced "
        "right behind it, and at fsync/fsyncdir (a local disk's contract, docs/posix.md Durability)",
        1,
    ),
    "dfs-mount-sync": (
        "DFS r1 mount --sync",
        "fsync data + metadata",
        "as DFS r1 mount, with `dfs mount --sync`: every change answered only once its metadata log is synced",
        2,
    ),
    "seaweed": (
        "SeaweedFS",
        "none",
        "by default nothing is fsynced: volume appends and filer metadata (leveldb) stay in the page cache",
        0,
    ),
    "seaweed-fsync": (
        "SeaweedFS fsync",
        "fsync data; metadata not",
        "after `fs.configure -locationPrefix=/ -fsync -apply` the volume server fsyncs each write; "
        "the filer's metadata (leveldb, its default store) is still not synced, so a mkdir is never durable",
        1,
    ),
    "seaweed-sync": (
        "SeaweedFS fsync, SQLite filer",
        "fsync data + metadata",
        "as SeaweedFS fsync, with the filer's metadata in its SQLite store (`[sqlite]` in filer.toml): every change "
        "is a transaction of its own, synced by SQLite's default synchronous=FULL (4 fsyncs per mkdir, seen with "
        "strace): the configuration of SeaweedFS at DFS's durability",
        2,
    ),
    "juicefs": (
        "JuiceFS",
        "none (fsync ignored)",
        "SQLite metadata and `--storage file` on local disk, FUSE: nothing is fsynced, even when the application "
        "calls fsync (the file store writes a temp file and renames it; SQLite WAL commits are not synced)",
        0,
    ),
}
ORDER = list(SYSTEMS)
# Per system: loopback sampled after each of its warm W1 gets (median).
PAIRED_LOOPBACK = "loopback after its W1 gets"
WORKLOADS = ["W1 put", "W1 get", "W1 get warm", "W2 write", "W2 read", "W3 mkdir", "W3 stat", "W4 cached re-read"]
COLORS = {
    "local": "#bbbbbb",
    "local-fsync": "#888888",
    "dfs": "#1f77b4",
    "dfs-r3": "#6baed6",
    "dfs-mount": "#08306b",
    "dfs-mount-sync": "#3f5f8f",
    "seaweed": "#2ca02c",
    "seaweed-fsync": "#98df8a",
    "seaweed-sync": "#c7e9c0",
    "juicefs": "#ff7f0e",
}


def load(path):
    rows = []
    with open(path) as source:
        for line in source:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            system, workload, figure, unit = parts[:4]
            note = parts[4] if len(parts) > 4 else ""
            try:
                value = float(figure)
            except ValueError:
                value = None
            rows.append({"system": system, "workload": workload, "value": value, "unit": unit, "note": note})
    return rows


def fmt(value):
    if value is None:
        return "n/a"
    return f"{value:,.0f}"


def table(rows):
    by = {(row["system"], row["workload"]): row["value"] for row in rows}
    baselines = [row for row in rows if row["system"] == "baseline"]
    disk = next((row["value"] for row in baselines if row["workload"].startswith("disk")), None)
    loop = next((row["value"] for row in baselines if row["workload"].startswith("loopback")), None)
    disk_read = next((row["value"] for row in baselines if row["workload"].startswith("read")), None)

    def ratio(value, reference):
        if value is None or not reference:
            return ""
        return f"{value / reference:.2f}"

    lines = [
        "| system | workload | figure | unit | / baseline | / SeaweedFS | durability at acknowledgement |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in baselines:
        figure = fmt(row["value"]) + (f" ({row['note']})" if row["note"] else "")
        lines.append(f"| machine baseline | {row['workload']} | {figure} | {row['unit']} |  |  |  |")
    others = [row for row in rows if row["system"] != "baseline" and row["workload"] != PAIRED_LOOPBACK]
    others.sort(key=lambda row: (
        WORKLOADS.index(row["workload"]) if row["workload"] in WORKLOADS else 99,
        ORDER.index(row["system"]) if row["system"] in ORDER else 99,
    ))
    for row in others:
        system, workload, value = row["system"], row["workload"], row["value"]
        shown, durability, _, synced = SYSTEMS.get(system, (system, "", "", 0))
        if system.startswith("dfs") and workload.startswith(("W2", "W3")):
            durability = INLINE_DURABILITY
        # The baseline: the disk for puts, loopback for gets, the same driver on
        # local disk at the same durability for W2 and W3.
        if workload == "W1 put":
            base = ratio(value, disk) + " of disk" if disk else ""
        elif workload == "W1 get":
            # Cold: the chunks come off the disk, then over loopback; the
            # slower of the two is the physical limit.
            base = ratio(value, loop) + " of loopback" if loop else ""
            if disk_read and (not loop or disk_read < loop):
                base = ratio(value, disk_read) + " of disk read" + (f", {base}" if base else "")
        elif workload == "W1 get warm":
            # Against loopback sampled right after this system's own warm
            # gets when there is such a sample (see run.sh `w1_gets`), else
            # against the whole run's.
            paired = by.get((system, PAIRED_LOOPBACK))
            base = ratio(value, paired or loop) + " of loopback" if paired or loop else ""
            if paired:
                base += f" (sampled after its gets: {fmt(paired)} MiB/s)"
        elif workload.startswith(("W2", "W3")) and not system.startswith("local"):
            local = "local-fsync" if synced else "local"
            reference = by.get((local, workload))
            base = f"{ratio(value, reference)} of {local}" if reference else ""
        else:
            base = ""
        against = "" if workload == "W4 cached re-read" else seaweed_ratios(by, system, workload, value, ratio)
        if system in ("dfs-mount", "dfs-mount-sync"):
            # Issue 20's targets: W1 at least 0.8 of `dfs put/get`, W2/W3 ahead of JuiceFS's mount.
            mount_peers = [f"{ratio(value, by[(peer, workload)])} × {SYSTEMS[peer][0]}"
                           for peer in ("dfs", "juicefs") if by.get((peer, workload))]
            against = "; ".join(mount_peers + ([against] if against else []))
        figure = fmt(value)
        if row["note"]:
            figure += f" ({row['note']})"
        lines.append(f"| {shown} | {workload} | {figure} | {row['unit']} | {base} | {against} | {durability} |")
    lines.append("")
    lines.append("Durability at acknowledgement, in full:")
    lines.append("")
    for name, (shown, _, full, _) in SYSTEMS.items():
        if full and any(row["system"] == name for row in rows):
            lines.append(f"- {shown}: {full}.")
    return "\n".join(lines)


SEAWEED = ["seaweed", "seaweed-fsync", "seaweed-sync"]


def seaweed_ratios(by, system, workload, value, ratio):
    """The "/ SeaweedFS" cell: against SeaweedFS at the same durability (what
    is synced at acknowledgement) if it ran, then against the SeaweedFS
    configuration that syncs less (the most of those) if it was faster;
    SeaweedFS's own synced configurations against its default."""
    synced = SYSTEMS.get(system, ("", "", "", 0))[3]
    if system in SEAWEED:
        peers = ["seaweed"] if system != "seaweed" else []
    else:
        equal = [peer for peer in SEAWEED if SYSTEMS[peer][3] == synced and by.get((peer, workload))]
        peers = equal[:1]
        best = by.get((peers[0], workload)) if peers else None
        # The configuration that syncs the most of those that sync less,
        # if it was more than 10 % faster.
        for peer in reversed(SEAWEED):
            faster = by.get((peer, workload))
            if SYSTEMS[peer][3] < synced and faster:
                if best is None or faster > 1.1 * best:
                    peers.append(peer)
                break
    cells = []
    for peer in peers:
        reference = by.get((peer, workload))
        if reference:
            suffix = "" if SYSTEMS[peer][3] == synced or system in SEAWEED else f" ({SYSTEMS[peer][1]})"
            cells.append(f"{ratio(value, reference)} × {SYSTEMS[peer][0]}{suffix}")
    return "; ".join(cells)


def svg(rows):
    panels = [w for w in WORKLOADS if any(r["workload"] == w and r["value"] for r in rows)]
    baselines = {r["workload"].split(" ")[0]: r["value"] for r in rows if r["system"] == "baseline"}
    # A dashed line for the physical limit of the W1 panels.
    limits = {
        "W1 put": ("disk dd", baselines.get("disk")),
        "W1 get": ("disk read", baselines.get("read")),
        "W1 get warm": ("loopback", baselines.get("loopback")),
    }
    panel_width, bar_height, gap, label_width = 470, 16, 4, 190
    slots = max(len({r["system"] for r in rows if r["workload"] == w}) for w in panels) if panels else 1
    panel_height = 44 + slots * (bar_height + gap) + 10
    columns = 2
    rows_of_panels = (len(panels) + columns - 1) // columns
    width = columns * panel_width + 20
    height = 50 + rows_of_panels * panel_height + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">DFS, SeaweedFS and JuiceFS on one machine '
        "(higher is better; bars scaled per panel)</text>",
    ]
    for index, workload in enumerate(panels):
        x0 = 10 + (index % columns) * panel_width
        y0 = 40 + (index // columns) * panel_height
        data = [r for r in rows if r["workload"] == workload and r["system"] != "baseline" and r["value"] is not None]
        data.sort(key=lambda r: ORDER.index(r["system"]) if r["system"] in ORDER else 99)
        unit = data[0]["unit"]
        limit_name, limit = limits.get(workload, (None, None))
        top = max([r["value"] for r in data] + [limit or 0]) or 1
        scale = (panel_width - label_width - 70) / top
        out.append(f'<text x="{x0}" y="{y0 + 14}" font-weight="bold">{html.escape(workload)} ({unit})</text>')
        for position, row in enumerate(data):
            y = y0 + 38 + position * (bar_height + gap)
            system = row["system"]
            out.append(
                f'<text x="{x0 + label_width - 6}" y="{y + 12}" text-anchor="end">'
                f"{html.escape(SYSTEMS.get(system, (system,))[0])}</text>"
            )
            length = max(1.0, scale * row["value"])
            color = COLORS.get(system, "#555555")
            out.append(
                f'<rect x="{x0 + label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{color}"/>'
            )
            out.append(f'<text x="{x0 + label_width + length + 4:.1f}" y="{y + 12}">{fmt(row["value"])}</text>')
        if limit:
            x = x0 + label_width + scale * limit
            bottom = y0 + 38 + len(data) * (bar_height + gap)
            out.append(
                f'<line x1="{x:.1f}" y1="{y0 + 30}" x2="{x:.1f}" y2="{bottom}" stroke="#d62728" stroke-dasharray="4,3"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{y0 + 27}" text-anchor="end" fill="#d62728">'
                f"{limit_name} {fmt(limit)}</text>"
            )
    out.append(
        f'<text x="10" y="{height - 10}" fill="#555">Durability differs: DFS, "local disk, fsync" and '
        '"SeaweedFS fsync, SQLite filer" sync data and metadata before acknowledging; "SeaweedFS fsync" only data; '
        "the others nothing. See peers.md.</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--elapsed", default="?")
    parser.add_argument("--command", default="bash bench/run.sh")
    parser.add_argument("--versions", default="")
    parser.add_argument("--dfs-file-servers", default="3")
    args = parser.parse_args()
    rows = load(args.results)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    markdown = f"""# DFS side by side with SeaweedFS and JuiceFS

Command: `{args.command}` on {os.cpu_count()} cores ({platform.machine()}), {today}, {args.elapsed} s in all.
Peers: {args.versions}, from PyPI. Every system runs on this machine's local disk, client and servers on loopback,
in the same run as the baselines; compare ratios, not absolute figures, across runs (see bench/README.md).

- W1: one file put then get (DFS: `dfs --no-cache put/get`; SeaweedFS: `curl -T` / `curl` on the filer;
  JuiceFS: `cp` into and out of the mount, mounted with `--cache-size 0`). "W1 get" is cold: the page cache is
  dropped first, so the chunks come off the disk. "W1 get warm" is the same get again right after, with the server
  side's page cache holding the file (DFS still with `--no-cache`: no client cache): what the network path moves.
- W2: files of 4 KiB written, then (after dropping the page cache) read back and checked, by 16 concurrent workers;
  W3: mkdir, then stat, by 16 workers. Each W2 and W3 phase runs REPEAT times on fresh paths; the figure is the
  median run (all runs in its note). One driver for every system (`dfs-bench`, crates/bench):
  the dfs-client library, SeaweedFS's filer HTTP API with a pooled client, and the POSIX calls on the JuiceFS mount
  or on local disk.
- W4: the W1 file read again, unchanged (DFS: a second `dfs get` with the cache on; the chunk bytes the file servers
  served in between, from their `bytes_out_total` counters, must be 0).
- DFS: `dfs up` with {args.dfs_file_servers} file servers; r1 = replication 1 (the apples-to-apples runs), r3 = replication 3.
  SeaweedFS: `weed server` (master, one volume server, filer with its default leveldb store; "SQLite filer": its
  SQLite store instead, the one that syncs metadata).
  JuiceFS: SQLite metadata engine, `--storage file` on local disk, FUSE.
- "/ baseline": W1 put to the disk (`dd conv=fdatasync`); the cold W1 get to the slower of a cold disk read
  (`dd` of the W1 file after dropping the page cache) and loopback TCP, which bound it; the warm W1 get to
  loopback TCP sampled right after that system's gets (1 s after each); W2 and W3 to the same driver on local disk at the same durability. "/ SeaweedFS": first to
  SeaweedFS at equal durability (DFS: `-fsync` and the SQLite filer, data and metadata synced), then, if one that
  syncs less was more than 10 % faster, to that one (in parentheses, what it syncs).

{table(rows)}

![chart](peers.svg)
"""
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "peers.md"), "w") as out:
        out.write(markdown)
    with open(os.path.join(args.out, "peers.svg"), "w") as out:
        out.write(svg(rows))


if __name__ == "__main__":
    main()
