#!/usr/bin/env python3
# Self host instructions per JS function from a callgrind run with --dump-instr=yes --dump-line=no
# and node --perf-basic-prof (the /tmp/perf-PID.map of that run).
#   python3 bench/tools/cg-fn.py OUT.callgrind perf-PID.map  -> "count name" lines (used by cg-fn.sh)
import sys, bisect, re, collections
out, pmap = sys.argv[1], sys.argv[2]
ranges = []
for l in open(pmap):
    a, s, name = l.rstrip("\n").split(" ", 2)
    ranges.append((int(a, 16), int(s, 16), name))
ranges.sort()
starts = [r[0] for r in ranges]
def name_of(addr):
    i = bisect.bisect_right(starts, addr) - 1
    if i >= 0 and addr < ranges[i][0] + ranges[i][1]: return ranges[i][2]
    return None
costs = collections.Counter()
cur = 0; skip = False; fn = "?"
for l in open(out):
    if not l or l[0] in "#": continue
    if l.startswith("fn="): fn = l[3:].strip(); continue
    if l.startswith("calls="): skip = True; continue
    c = l[0]
    if c == '0' or c == '+' or c == '-' or c == '*':
        parts = l.split()
        p = parts[0]
        if p.startswith("0x"): cur = int(p, 16)
        elif p[0] == '+': cur += int(p[1:], 16) if p[1:].startswith("0x") else int(p[1:])
        elif p[0] == '-': cur -= int(p[1:], 16) if p[1:].startswith("0x") else int(p[1:])
        if skip: skip = False; continue
        if len(parts) < 2: continue
        n = int(parts[1])
        nm = name_of(cur)
        if nm is None:
            # native code: by callgrind's function name
            nm = "[C] " + re.sub(r"^\(\d+\)\s*", "", fn)
        costs[nm] += n
    else:
        skip = False if not l.startswith("calls=") else skip
for nm, n in costs.most_common():
    print(n, nm)
