#!/bin/bash
# Issue 14's measured rule: bench_local.py and bench_ssh.py (workload and poll), the tree
# before the redesign (e2af651) against this tree, in one sitting.
# Rounds alternate the two trees (and which goes first) so load changes hit both alike.
#
#   BEFORE=/path/to/tree-at-e2af651 ROUNDS=3 bench/issue14/compare.sh [AFTER_TREE]
#   (as root: the SSH benches start sshd; PY= the interpreter with remotetune's dependencies)
#
# Every run is wrapped in /usr/bin/time: "total CPU" is user+sys of the bench process and
# everything it waited for (sshd, agents, trials, the CLI); the poll part's "controller CPU"
# is the bench's own process_time figure; "agents" runs pollprof.py (the same
# set-up as the poll part) for the 4 agents' CPU per cycle, read from /proc.
# Prints medians side by side with after/before.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BEFORE=${BEFORE:?set BEFORE to a checkout of e2af651}
AFTER=${1:-$(cd "$HERE/../.." && pwd)}
PY=${PY:-python3}
ROUNDS=${ROUNDS:-3}
PARTS=${PARTS:-poll agents workload local}  # a subset, e.g. PARTS="workload local"
LOG=${LOG:-/tmp/bench14.$$}
mkdir -p "$LOG"
echo "logs in $LOG; before=$BEFORE after=$AFTER rounds=$ROUNDS; $(nproc) cores"

run() {  # run TREE-NAME PART ROUND
    local name=$1 part=$2 round=$3 tree
    [ "$name" = before ] && tree=$BEFORE || tree=$AFTER
    local out="$LOG/$part.$name.$round"
    local args
    case $part in
        poll) args="bench/bench_ssh.py --part poll --cycles 20" ;;
        workload) args="bench/bench_ssh.py --part workload --no-nni" ;;
        # this tree's bench_local.py for both trees (REMOTETUNE_BENCH_TREE): it imports the
        # modules the controller loads lazily before its clock starts, in either tree
        local) args="$AFTER/bench/bench_local.py" ;;
        agents) args="$HERE/pollprof.py --cycles 40" ;;  # agent CPU from /proc
    esac
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)" > "$out"
    (cd "$tree" && PYTHONPATH=$tree REMOTETUNE_BENCH_TREE=$tree /usr/bin/time -f "TIME %e %U %S" -a -o "$out" \
        timeout 600 "$PY" $args >> "$out" 2>&1)
    echo "  $part $name: $(grep -E 'wall|TIME' "$out" | tr '\n' ' ' | cut -c1-200)"
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="before after"; else order="after before"; fi
    echo "round $round ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    for part in $PARTS; do
        for name in $order; do run "$name" "$part" "$round"; done
    done
done

"$PY" - "$LOG" <<'EOF'
import re, statistics, sys
from pathlib import Path

log = Path(sys.argv[1])
FIGS = {
    "poll": [("poll wall, median of 20 cycles (ms)", r"wall median ([\d.]+) ms"),
             ("poll controller CPU, median (ms)", r"controller CPU median ([\d.]+) ms"),
             ("poll controller CPU, min (ms)", r"controller CPU median [\d.]+ ms \(min ([\d.]+)")],
    "workload": [("SSH workload wall (s)", r"wall ([\d.]+) s, first"),
                 ("SSH first trial (s)", r"running after ([\d.]+) s")],
    "agents": [("poll (pollprof.py): controller CPU, mean (ms)", r"mean ctl cpu ([\d.]+) ms"),
               ("poll (pollprof.py): 4 agents' CPU, mean (ms)", r"mean agents ([\d.]+) ms"),
               ("poll (pollprof.py): answer bytes, 4 hosts", r"answer bytes (\d+)")],
    "local": [("local workload wall (s)", r"wall ([\d.]+) s \(ideal"),
              ("local first trial (ms)", r"running after (\d+) ms"),
              ("local refill gap median (ms)", r"refill gap median ([\d.]+) ms"),
              ("local TPE suggest (ms)", r"latency after 1,000 finished trials: ([\d.]+) ms")],
}
print("\nmedians over rounds (after/before: < 1 is faster)")
print(f"{'figure':44} {'before':>9} {'after':>9} {'ratio':>7}  n")
loads = []
for part, figs in FIGS.items():
    rows = list(figs)
    if part in ("workload", "local"):  # the poll parts' trials are reaped by init or not
        rows.append((f"{part}: total CPU, all processes (s)", None))
    for label, pattern in rows:
        vals = {}
        for name in ("before", "after"):
            vals[name] = []
            for f in sorted(log.glob(f"{part}.{name}.*")):
                text = f.read_text()
                loads.append(float(text.split()[1]))
                if pattern is None:
                    m = re.search(r"TIME ([\d.]+) ([\d.]+) ([\d.]+)", text)
                    if m:
                        vals[name].append(float(m.group(2)) + float(m.group(3)))
                else:
                    m = re.search(pattern, text)
                    if m:
                        vals[name].append(float(m.group(1)))
        if vals["before"] and vals["after"]:
            b, a = statistics.median(vals["before"]), statistics.median(vals["after"])
            print(f"{label:44} {b:9.2f} {a:9.2f} {a / b:7.2f}  {len(vals['before'])}/{len(vals['after'])}")
        else:
            print(f"{label:44} missing: {vals}")
print(f"1-min load average at the runs' starts: median {statistics.median(loads):.1f}, "
      f"min {min(loads):.1f}, max {max(loads):.1f}")
EOF
