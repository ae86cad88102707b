#!/usr/bin/env python3
"""Silent connections against a real `meshtrace-control serve` (issue 14, defect 9a).

Per run: start the server (optionally under `prlimit --nofile=N:N`), open
--connections TCP connections that never send a byte, and then time one
`GET /healthz` on a fresh connection (connect to the complete response, capped at
--cap seconds). The server's descriptors (`/proc/<pid>/fd`) are counted before the
silent connections, while they are open (just after /healthz), and --later seconds
after they were opened (past the first-byte deadline).

    python3 benches/load/control-silent.py --control-bin target/release/meshtrace-control \
        --connections 300 --runs 5 [--nofile 256] [-- extra serve flags]

Prints one line per run and the median /healthz time.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def start(args, tmp):
    with open(os.path.join(tmp, "source.yaml"), "w") as f:
        f.write("defaults: {}\n")
    log_path = os.path.join(tmp, "control.log")
    cmd = [args.control_bin, "serve", "--listen", "127.0.0.1:0",
           "--source", os.path.join(tmp, "source.yaml"),
           "--state", os.path.join(tmp, "state.json")] + args.serve_args
    if args.nofile:
        cmd = ["prlimit", f"--nofile={args.nofile}:{args.nofile}", "--"] + cmd
    env = dict(os.environ, NO_COLOR="1")
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(log_path) as f:
            m = re.search(r"addr=(\S+)", f.read())
        if m:
            host, port = m.group(1).rsplit(":", 1)
            return proc, (host, int(port)), log_path
        time.sleep(0.02)
    proc.kill()
    sys.exit("the server did not start: " + open(log_path).read())


def healthz(addr, cap):
    """Seconds until a complete /healthz answer, or None past `cap`."""
    t0 = time.monotonic()
    s = socket.create_connection(addr, timeout=cap)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: control\r\nconnection: close\r\n\r\n")
        got = b""
        while b'{"status":"ok"}' not in got:
            s.settimeout(max(0.001, cap - (time.monotonic() - t0)))
            chunk = s.recv(4096)
            if not chunk:
                return None
            got += chunk
        return time.monotonic() - t0
    except (socket.timeout, OSError):
        return None
    finally:
        s.close()


def run(args, n):
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr, log_path = start(args, tmp)
        pid = proc.pid  # prlimit execs the server: the same pid
        time.sleep(0.5)
        base = fds(pid)
        opened = time.monotonic()
        silent = [socket.create_connection(addr) for _ in range(args.connections)]
        opening = time.monotonic() - opened
        time.sleep(args.pause)
        took = healthz(addr, args.cap)
        during = fds(pid)
        time.sleep(max(0.0, args.later - (time.monotonic() - opened)))
        later = fds(pid)
        closed = 0
        for s in silent:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            s.close()
        proc.terminate()
        proc.wait(timeout=10)
        log = open(log_path).read()
        errors = log.count("accept failed")
        m = re.search(r"effective=(\d+)", log)
        bound = f"; bound lowered to {m.group(1)}" if m else ""
        shown = f"{took * 1000:.1f} ms" if took is not None else f"no answer in {args.cap:.0f} s"
        print(f"run {n}: opened in {opening * 1000:.0f} ms; /healthz {shown}; fds before {base}, with {args.connections} silent open "
              f"{during}, {args.later:.0f} s after opening {later}; silent closed by the server "
              f"{closed}/{args.connections}; 'accept failed' log lines {errors}{bound}")
        return took


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--control-bin", required=True)
    p.add_argument("--connections", type=int, default=300)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--nofile", type=int, default=0)
    p.add_argument("--cap", type=float, default=30.0)
    p.add_argument("--later", type=float, default=8.0)
    p.add_argument("--pause", type=float, default=0.0,
                   help="seconds between opening the silent connections and /healthz")
    p.add_argument("serve_args", nargs="*")
    args = p.parse_args()
    times = [run(args, n) for n in range(1, args.runs + 1)]
    answered = [t for t in times if t is not None]
    if answered:
        print(f"/healthz median {statistics.median(answered) * 1000:.1f} ms "
              f"(min {min(answered) * 1000:.1f}, max {max(answered) * 1000:.1f}; "
              f"{len(answered)}/{len(times)} answered within {args.cap:.0f} s)")
    else:
        print(f"/healthz never answered within {args.cap:.0f} s ({len(times)} runs)")


if __name__ == "__main__":
    main()
