#!/bin/bash
# Host instructions per check under callgrind: the difference between 2,000 and 10,000 checks.
# One build's count varies by a few % between runs (by up to ±15 % without --predictable-gc-schedule):
# compare builds side by side, and repeat.
#   bash bench/tools/cg-count.sh <root> <tag> [check64|check32] [layout|real|arm|emu|full]  (see cg-work.mjs)
# Builds nothing: run `npx tsc -p tsconfig.build.json` in <root> first. Takes ~2-4 min.
root=$1; tag=$2; what=${3:-check64}; upto=${4:-full}; out=/tmp/cg-$tag-$upto; mkdir -p $out
for n in 2000 10000; do
  valgrind --tool=callgrind --callgrind-out-file=$out/$what-$n.out node --single-threaded --predictable --predictable-gc-schedule "$(dirname "$0")/cg-work.mjs" $root $what $n $upto > $out/$what-$n.log 2>&1 || { echo "failed: $out/$what-$n.log"; exit 1; }
done
a=$(grep -o 'Collected : [0-9]*' $out/$what-2000.log | grep -o '[0-9]*$'); b=$(grep -o 'Collected : [0-9]*' $out/$what-10000.log | grep -o '[0-9]*$')
echo "$tag $what $upto host instructions per check: $(( (b - a) / 8000 ))"
