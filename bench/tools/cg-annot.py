#!/usr/bin/env python3
# cg-annot.py DIR FNREGEX [min]: per-instruction self counts per check (and calls' inclusive
# counts) of the optimized code objects whose perf-map name matches FNREGEX, from cg-annot.sh.
import sys, re, bisect, collections
d, fnre = sys.argv[1], re.compile(sys.argv[2])
mn = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
nchecks = float(open(d + "/checks").read())
ranges = []
for l in open(d + "/map.map"):
    a, s, name = l.rstrip("\n").split(" ", 2)
    if fnre.search(name): ranges.append((int(a, 16), int(s, 16), name))
ranges.sort(); starts = [r[0] for r in ranges]
def inside(addr):
    i = bisect.bisect_right(starts, addr) - 1
    return i >= 0 and addr < ranges[i][0] + ranges[i][1]
cnt = collections.Counter(); calls = collections.Counter()
cur = 0; skip = False
for l in open(d + "/cg.out"):
    if not l or l[0] == "#": continue
    if l.startswith("calls="): skip = True; continue
    if l[0] in "0+-*":
        parts = l.split(); p = parts[0]
        if p.startswith("0x"): cur = int(p, 16)
        elif p[0] == '+': cur += int(p[1:], 16) if p[1:].startswith("0x") else int(p[1:])
        elif p[0] == '-': cur -= int(p[1:], 16) if p[1:].startswith("0x") else int(p[1:])
        if skip:
            skip = False
            if len(parts) >= 2 and inside(cur): calls[cur] += int(parts[1])
            continue
        if len(parts) >= 2 and inside(cur): cnt[cur] += int(parts[1])
dl = {}
for l in open(d + "/dis.txt", errors="replace"):
    m = re.match(r"^(0x[0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+(.*)$", l)
    if m: dl[int(m.group(1), 16)] = (m.group(2), m.group(3).rstrip())
for a, s, name in ranges:
    tot = sum(v for k, v in cnt.items() if a <= k < a + s)
    if tot / nchecks < 5: continue
    print(f"=== {name} self/check {tot / nchecks:.0f}")
    for k in sorted(x for x in dl if a <= x < a + s):
        v, cl = cnt.get(k, 0) / nchecks, calls.get(k, 0) / nchecks
        if v >= mn or cl > 0:
            off, txt = dl[k]
            print(f"{v:7.1f} {'' if cl == 0 else f'[incl {cl:.0f}]'} {off:>5} {txt}")
