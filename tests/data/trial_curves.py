"""A trial with a learning-curve-like metric, for the report tests and the README screenshot.

Parameters: lr, dropout, batch_size, optimizer (a nested choice: {"_name": "sgd",
"momentum": m} or {"_name": "adam"}), steps, step_sleep. Reports ``steps`` intermediate
"accuracies" then a final one; an sgd run with a large lr diverges and exits 1. Batch size
16 runs slowly, so a short maxTrialDuration stops it early.
"""

import math
import random
import sys
import time

from remotetune import trial

p = trial.get_next_parameter()
lr = float(p.get("lr", 0.01))
dropout = float(p.get("dropout", 0.2))
batch = int(p.get("batch_size", 64))
opt = p.get("optimizer", {"_name": "adam"})
steps = int(p.get("steps", 15))
pause = float(p.get("step_sleep", 0.05)) * (6 if batch == 16 else 1)
rng = random.Random(trial.get_trial_id())

momentum = float(opt.get("momentum", 0.0)) if opt.get("_name") == "sgd" else 0.0
quality = 0.97 - 0.25 * abs(math.log10(lr) + 2.3) ** 2 / 4 - 0.3 * (dropout - 0.25) ** 2
quality += 0.02 if opt.get("_name") == "adam" else 0.03 * momentum
speed = 0.15 + 4 * lr * (1 + momentum) + 0.002 * batch
acc = 0.1
for step in range(1, steps + 1):
    acc = 0.1 + (quality - 0.1) * (1 - math.exp(-speed * step)) + rng.gauss(0, 0.006)
    if opt.get("_name") == "sgd" and lr > 0.05 and step > steps // 3:
        print("loss is nan: diverged", file=sys.stderr)
        sys.exit(1)
    trial.report_intermediate_result(round(acc, 5))
    time.sleep(pause)
trial.report_final_result({"default": round(acc, 5), "steps": steps})
