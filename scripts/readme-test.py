#!/usr/bin/env python3
"""Runs README.md's set-up command and its five-minute tour, as written.

The README's first command (`cargo run --release -- up`) is started in the
background, in a copy of the checkout made of symlinks (so that its
`dfs-data` and fixed ports are this test's own), and once the cluster
answers, every shell line of the tour's code blocks runs in one bash
session inside a pseudo-terminal, so that the commands that prompt for a
password (`dfs user add ann`, `dfs login ann`) are answered as a person
would. Each line must succeed, except a line whose comment says it fails,
which must fail; `dfs watch`, which runs until interrupted, runs for two
seconds. Then the cluster is stopped with Ctrl-C (SIGINT) and must exit.

Usage: python3 scripts/readme-test.py   (from anywhere; CARGO_TARGET_DIR is honoured)
Exit status 0 if every line did what the README says.
"""

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
# A fixed place (not a fresh temp dir), so that cargo's fingerprints stay
# valid from one run to the next and the release build is incremental.
WORK = os.path.join(TARGET, "readme-test")
ANN_PASSWORD = "ann-readme-password"
BUILD_AND_START_LIMIT = 45 * 60
LINE_LIMIT = 120


def log(message):
    print(f"readme-test: {message}", file=sys.stderr, flush=True)


def code_blocks(markdown):
    """(heading, lines) of every ```sh block, under the last `## ` heading seen."""
    blocks, heading, inside, lines = [], "", False, []
    for line in markdown.splitlines():
        if not inside and line.startswith("## "):
            heading = line[3:].strip()
        elif not inside and line.strip() == "```sh":
            inside, lines = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append((heading, lines))
        elif inside:
            lines.append(line)
    return blocks


def shell_lines(lines):
    """The lines of a block that do something (not blank, not only a comment)."""
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def prepare():
    """WORK/repo: the checkout as symlinks, with a fresh data dir and home."""
    repo = os.path.join(WORK, "repo")
    for name in ["repo/dfs-data", "home", "config", "repo/photos"]:
        shutil.rmtree(os.path.join(WORK, name), ignore_errors=True)
    os.makedirs(repo, exist_ok=True)
    for name in ["Cargo.toml", "Cargo.lock", "crates", "README.md", "rustfmt.toml"]:
        link = os.path.join(repo, name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.join(ROOT, name), link)
    target_link = os.path.join(repo, "target")
    if os.path.lexists(target_link):
        os.remove(target_link)
    os.symlink(TARGET, target_link)
    # What the tour's lines expect to find: a local tree to upload, and
    # the directory bash completions go to.
    photos = os.path.join(repo, "photos")
    os.makedirs(os.path.join(photos, "2024"))
    for index in range(3):
        with open(os.path.join(photos, "2024", f"p{index}.jpg"), "wb") as file:
            file.write(os.urandom(20_000 + index))
    with open(os.path.join(photos, "big.raw"), "wb") as file:
        file.write(os.urandom(9 * 1024 * 1024))
    home = os.path.join(WORK, "home")
    os.makedirs(os.path.join(home, ".local/share/bash-completion/completions"))
    os.makedirs(os.path.join(WORK, "config"))
    for stale in ["/tmp/copy.md", "/tmp/photos"]:
        # Left by an earlier run of this test (the tour writes there).
        if os.path.exists(os.path.join(WORK, "wrote-tmp")) and os.path.lexists(stale):
            shutil.rmtree(stale, ignore_errors=True) if os.path.isdir(stale) else os.remove(stale)
    with open(os.path.join(WORK, "wrote-tmp"), "w") as file:
        file.write("the tour writes /tmp/copy.md and /tmp/photos\n")
    env = dict(os.environ)
    env.update(
        HOME=home,
        DFS_CONFIG_DIR=os.path.join(WORK, "config"),
        DFS_CACHE_DIR=os.path.join(WORK, "home", ".cache", "dfs"),
        CARGO_TARGET_DIR=TARGET,
        CARGO_TERM_COLOR="never",
    )
    for name in ["DFS_URL", "DFS_CA_CERT", "DFS_RETRY_FOR", "DFS_REQUEST_ID"]:
        env.pop(name, None)
    # cargo and rustup find their homes through HOME unless told.
    env.setdefault("CARGO_HOME", os.path.join(os.path.expanduser("~"), ".cargo"))
    env.setdefault("RUSTUP_HOME", os.path.join(os.path.expanduser("~"), ".rustup"))
    return repo, env


def port_free(port):
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_cluster(command, repo, env):
    """Starts the set-up command in the background; returns once the cluster answers."""
    for port in range(7070, 7075):
        if not port_free(port):
            sys.exit(f"readme-test: port {port} is taken; the README's cluster uses 7070-7074")
    output = open(os.path.join(WORK, "up.log"), "wb")
    log(f"starting `{command}` in {repo} (log: {WORK}/up.log)")
    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=repo, env=env, stdout=output, stderr=subprocess.STDOUT
    )
    password_file = os.path.join(repo, "dfs-data", "admin-password")
    while True:
        if process.poll() is not None:
            tail = open(os.path.join(WORK, "up.log"), errors="replace").read()[-3000:]
            sys.exit(f"readme-test: `{command}` exited with {process.returncode}:\n{tail}")
        if os.path.exists(password_file) and banner_printed():
            break
        if time.monotonic() - started > BUILD_AND_START_LIMIT:
            process.send_signal(signal.SIGINT)
            sys.exit(f"readme-test: the cluster did not start within {BUILD_AND_START_LIMIT} s")
        time.sleep(0.5)
    log(f"the cluster answers, {time.monotonic() - started:.0f} s after `{command}`")
    return process


def banner_printed():
    """Whether `dfs up` said it is up (once every file server registered) and the directory answers."""
    if "DFS is up." not in open(os.path.join(WORK, "up.log"), errors="replace").read():
        return False
    try:
        with urllib.request.urlopen("http://127.0.0.1:7070/v1/info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def expected_to_fail(line):
    comment = line.split("#", 1)[1] if "#" in line else ""
    return re.search(r"\bfails\b", comment) is not None


def tour_script(lines):
    """One bash script: each line between markers that report its exit status."""
    script = ["set -o pipefail"]
    for number, line in enumerate(lines):
        command = line
        if re.match(r"\s*dfs watch\b", line):
            # Runs until interrupted: two seconds of it.
            command = f"timeout 2 {line}"
        script.append(f"echo '@@begin {number}'")
        script.append(command)
        script.append(f"echo \"@@end {number} $?\"")
    script.append("echo '@@done'")
    return "\n".join(script) + "\n"


def run_tour(lines, repo, env):
    """Runs `lines` in one bash session on a pseudo-terminal; returns the failures."""
    script_path = os.path.join(WORK, "tour.sh")
    with open(script_path, "w") as file:
        file.write(tour_script(lines))
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(repo)
        os.execve("/bin/bash", ["bash", "--noprofile", "--norc", script_path], env)
    transcript, pending, failures = b"", b"", []
    status = {}
    deadline = time.monotonic() + LINE_LIMIT
    current = None
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if time.monotonic() > deadline:
            failures.append(f"line {current}: {lines[current] if current is not None else ''}: no progress in {LINE_LIMIT} s")
            os.kill(pid, signal.SIGKILL)
            break
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        transcript += data
        pending += data
        for match in re.finditer(rb"@@begin (\d+)\r?\n", pending):
            current = int(match.group(1))
            deadline = time.monotonic() + LINE_LIMIT
        if b"@@done" in pending:
            break
        # Password prompts (rpassword writes them to the terminal).
        if re.search(rb"(Password for ann: |Again: )$", pending):
            os.write(fd, (ANN_PASSWORD + "\n").encode())
            pending = b""
        pending = pending[-4096:]
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    with open(os.path.join(WORK, "tour.log"), "wb") as file:
        file.write(transcript)
    for match in re.finditer(rb"@@end (\d+) (\d+)\r?\n", transcript):
        status[int(match.group(1))] = int(match.group(2))
    for number, line in enumerate(lines):
        code = status.get(number)
        if code is None:
            failures.append(f"never finished: {line}")
        elif line.lstrip().startswith("dfs watch"):
            if code != 124:
                failures.append(f"exit {code} (expected to run until stopped): {line}")
        elif expected_to_fail(line) and code == 0:
            failures.append(f"succeeded, but the README says it fails: {line}")
        elif not expected_to_fail(line) and code != 0:
            failures.append(f"exit {code}: {line}")
    return failures


def main():
    readme = open(os.path.join(ROOT, "README.md")).read()
    blocks = code_blocks(readme)
    setup = shell_lines(blocks[0][1])[0].split("#")[0].strip()
    tour = [block for heading, block in blocks if heading == "A five-minute tour"]
    if setup != "cargo run --release -- up" or len(tour) < 3:
        log(f"README's set-up command is {setup!r}; tour blocks: {len(tour)}")
    start_in_tour = shell_lines(tour[0])[0].split("#")[0].strip()
    if start_in_tour != setup:
        sys.exit(f"readme-test: the tour starts the cluster with {start_in_tour!r}, the top of README with {setup!r}")
    lines = [line for block in tour[1:] for line in shell_lines(block)]
    repo, env = prepare()
    cluster = start_cluster(setup, repo, env)
    try:
        log(f"running the tour's {len(lines)} shell lines (transcript: {WORK}/tour.log)")
        failures = run_tour(lines, repo, env)
    finally:
        cluster.send_signal(signal.SIGINT)  # Ctrl-C stops it
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()
            failures = ["`dfs up` did not stop within 30 s of Ctrl-C"]
    if failures:
        transcript = open(os.path.join(WORK, "tour.log"), errors="replace").read()
        log("the tour's transcript:\n" + transcript[-6000:])
        for failure in failures:
            log(f"FAILED: {failure}")
        sys.exit(1)
    log(f"every line of README's set-up and tour did what it says ({len(lines)} lines)")


if __name__ == "__main__":
    main()
