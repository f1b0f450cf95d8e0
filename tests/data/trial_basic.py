"""A small trial for the tests: reports STEPS intermediate results, then a final one.

Parameters: x (the final metric), sleep (seconds per step), fail (exit 3 before the final),
garbage (also write a line that is not a metric), hang (sleep this long at the end).
It appends each reported value to reported.txt in its trial directory, so tests can
compare what the store holds with what the trial wrote.
"""

import os
import sys
import time

from remotetune import trial

p = trial.get_next_parameter()
x = float(p.get("x", 0.5))
steps = int(p.get("steps", 3))
trial_dir = os.environ.get("REMOTETUNE_TRIAL_DIR", ".")
print("trial", trial.get_trial_id(), "params", p, "cuda", os.environ.get("CUDA_VISIBLE_DEVICES"))
sys.stdout.flush()
with open(os.path.join(trial_dir, "reported.txt"), "a") as log:
    for i in range(steps):
        value = round(x * (i + 1) / steps, 6)
        trial.report_intermediate_result(value)
        log.write(f"{value!r}\n")
        log.flush()
        time.sleep(float(p.get("sleep", 0.02)))
    if p.get("garbage"):
        with open(os.environ["REMOTETUNE_METRICS_FILE"], "a") as f:
            f.write("this is not json\n")
    if p.get("hang"):
        time.sleep(float(p["hang"]))
    if p.get("fail"):
        print("something went wrong on purpose", file=sys.stderr)
        sys.exit(3)
    trial.report_final_result({"default": x, "steps": steps})
    log.write(f"{x!r}\n")
