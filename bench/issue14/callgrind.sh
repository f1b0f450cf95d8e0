#!/bin/bash
# Instructions per poll cycle (64 trials, one host, agent + controller decode, in-process):
# (Ir with 40 cycles - Ir with 10 cycles) / 30, for each tree given.
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python3}
for t in "$@"; do
  cd "$t" || exit 1
  ir() { PYTHONPATH=$t valgrind --tool=callgrind --callgrind-out-file=/tmp/cg_$$_$1.out \
      "$PY" "$HERE/pollcycle.py" --cycles $1 2>&1 \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
  a=$(ir 10); b=$(ir 40)
  echo "$t: $(( (b - a) / 30 )) instructions per cycle (Ir 10 cycles $a, 40 cycles $b)"
done
