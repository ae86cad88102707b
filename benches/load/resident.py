#!/usr/bin/env python3
"""Which crates' code is resident: the pages of a running process's binary text
that are in its RSS (/proc/PID/pagemap, so run as root), each attributed to the
crate owning most of the functions on it (nm's demangled names).

    python3 benches/load/resident.py PID BINARY [TOP]

Linux maps file pages around each fault (fault-around, 64 KiB), so a page is
resident when code near it ran, not only when its own code did.
"""
import collections
import re
import struct
import subprocess
import sys

PAGE = 4096
pid, binary = sys.argv[1], sys.argv[2]
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
name = binary.rsplit("/", 1)[-1]

base = text = None
for line in open(f"/proc/{pid}/maps"):
    f = line.split()
    if len(f) < 6 or not f[5].endswith(name):
        continue
    lo, hi = (int(x, 16) for x in f[0].split("-"))
    if int(f[2], 16) == 0:
        base = lo
    if "x" in f[1]:
        text = (lo, hi)
lo, hi = text
with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
    pagemap.seek(lo // PAGE * 8)
    raw = pagemap.read((hi - lo) // PAGE * 8)
present = [struct.unpack_from("<Q", raw, i * 8)[0] >> 63 for i in range(len(raw) // 8)]

# Crates per page of the text map (symbol addresses are relative to the load base).
crates = collections.defaultdict(collections.Counter)
symbols = subprocess.run(["nm", "-C", "-S", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
for line in symbols.splitlines():
    f = line.split(" ", 3)
    if len(f) < 4 or f[2] not in "tT":
        continue
    start = base + int(f[0], 16) - lo
    size = max(int(f[1], 16), 1)
    symbol = re.sub(r"^(<|&|impl |dyn |\*const |\*mut )+", "", f[3])
    crate = re.match(r"[A-Za-z_][A-Za-z0-9_]*", symbol)
    for page in range(start // PAGE, (start + size - 1) // PAGE + 1):
        crates[page][crate.group(0) if crate else "?"] += 1

owner = collections.Counter()
for page, resident in enumerate(present):
    if resident:
        owner[crates[page].most_common(1)[0][0] if crates[page] else "(no symbol)"] += 4
print(f"resident text: {sum(present) * 4} KiB of {(hi - lo) // 1024} KiB")
for crate, kib in owner.most_common(top):
    print(f"{kib:7d} KiB  {crate}")
