#!/bin/bash
# Self host instructions per check per JS function: callgrind with --dump-instr=yes and V8 --perf-basic-prof
# (JIT code addresses mapped to functions through /tmp/perf-PID.map); the difference of 2,000 and 6,000 checks.
#   bash bench/tools/cg-fn.sh ROOT TAG [check64|check32] [upto] [lines=70]   -> /tmp/cgfn-TAG/diff.txt (V8 compiler/parser lines, which vary run to run, are left out of the print)
tools=$(cd "$(dirname "$0")" && pwd); root=$(cd "$1" && pwd); tag=$2; what=${3:-check64}; upto=${4:-full}; out=/tmp/cgfn-$tag; rm -rf $out; mkdir -p $out; cd $out
for n in 2000 6000; do
  valgrind --tool=callgrind --dump-instr=yes --dump-line=no --callgrind-out-file=$out/cg-$n.out node --perf-basic-prof --no-compact-code-space --single-threaded --predictable --predictable-gc-schedule $root/bench/tools/cg-work.mjs $root $what $n $upto > $out/log-$n.txt 2>&1 &
  pid=$!; wait $pid; mv /tmp/perf-$pid.map $out/map-$n.map
  python3 $tools/cg-fn.py $out/cg-$n.out $out/map-$n.map > $out/fn-$n.txt
done
python3 - $out <<'PY'
import sys, collections
d = sys.argv[1]
def load(f):
    c = collections.Counter()
    for l in open(f):
        n, nm = l.rstrip("\n").split(" ", 1)
        # strip V8 tier markers and addresses so both runs name functions alike
        import re
        nm = re.sub(r"^(LazyCompile|Function|JS|Builtin|Stub|BytecodeHandler|RegExp|Eval|Script):", "", nm)
        c[nm] += int(n)
    return c
a, b = load(d + "/fn-2000.txt"), load(d + "/fn-6000.txt")
diff = collections.Counter({k: (b[k] - a[k]) / 4000 for k in set(a) | set(b)})
tot = sum(diff.values())
with open(d + "/diff.txt", "w") as f:
    f.write(f"total {tot:.0f}\n")
    for k, v in sorted(diff.items(), key=lambda kv: -kv[1]):
        if abs(v) >= 5: f.write(f"{v:8.0f} {k}\n")
PY
grep -v 'compiler::\|wasm::\|Zone\|Translation\|IdentityMap\|StringTable\|Scaveng\|BodyDescriptor\|Serializ\|interpreter::\|Scanner\|RegExp\|Parser' $out/diff.txt | head -${5:-70}
