#!/bin/bash
# Per-instruction host counts of JIT-compiled functions, with their disassembly: callgrind with
# --dump-instr=yes on cg-work.mjs under V8's --print-opt-code (every optimized function's code,
# absolute addresses) and --perf-basic-prof (where each function's code lies).
#   bash bench/tools/cg-annot.sh <root> <tag> [N=1000] [mode=full] [check64|check32]  -> /tmp/cg-annot-<tag>/
#   python3 bench/tools/cg-annot.py /tmp/cg-annot-<tag> '<regex on perf-map names, e.g. \*stackRun >' [min count per check]
# Counts are per check over warm-up (20,000) + N checks: good for where a function's time goes and
# for comparing two builds function by function, not for the check's total (cg-count.sh).
root=$1; tag=$2; n=${3:-1000}; mode=${4:-full}; what=${5:-check64}; out=/tmp/cg-annot-$tag
rm -rf $out; mkdir -p $out; echo $((20000 + n)) > $out/checks
valgrind --tool=callgrind --dump-instr=yes --dump-line=no --callgrind-out-file=$out/cg.out node --perf-basic-prof --no-compact-code-space --single-threaded --predictable --predictable-gc-schedule --print-opt-code --code-comments "$(dirname "$0")/cg-work.mjs" $root $what $n $mode > $out/dis.txt 2> $out/err.txt &
pid=$!; wait $pid; mv /tmp/perf-$pid.map $out/map.map
echo "$out"
