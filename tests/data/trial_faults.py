"""A trial for the fault tests: a metric line every ``sleep`` seconds for ``steps`` steps.

Parameters: x (the final metric), steps, sleep. In its trial directory it appends
``started.jsonl`` (one line per start: pid, process group, start time, hostname), so a
restarted trial shows two lines, and ``reported.txt`` (each value it reported, one a
line), so tests can compare the store with what the trial itself wrote.
"""

import json
import os
import socket
import sys
import time

from remotetune import trial

p = trial.get_next_parameter()
x = float(p.get("x", 0.5))
steps = int(p.get("steps", 10))
pause = float(p.get("sleep", 0.2))
trial_dir = os.environ["REMOTETUNE_TRIAL_DIR"]
with open(os.path.join(trial_dir, "started.jsonl"), "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0), "started": time.time(),
                        "host": socket.gethostname()}) + "\n")
print("trial", trial.get_trial_id(), "params", p)
sys.stdout.flush()
with open(os.path.join(trial_dir, "reported.txt"), "a") as log:
    for i in range(steps):
        value = round(x + i, 6)  # distinct per step: a duplicate or a gap shows
        trial.report_intermediate_result(value)
        log.write(f"{value!r}\n")
        log.flush()
        time.sleep(pause)
    trial.report_final_result(x)
    log.write(f"{x!r}\n")
