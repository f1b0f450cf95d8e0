"""A trial for the SSH end-to-end tests: records where and when it ran.

It reports STEPS intermediate results and a final one whose dict carries what the trial
saw: ``cuda`` (CUDA_VISIBLE_DEVICES, None when unset), ``host`` (HOST_LABEL from the
machines file's ``env:``), ``start`` and ``end`` (time.time()) and ``pid``. The same facts,
and every reported value, go to ``record.json`` and ``reported.txt`` in
REMOTETUNE_TRIAL_DIR, so a test compares what the store holds with what the trial wrote.
Parameters: x (the final value), steps, sleep (seconds per step), hold (seconds to sleep
before the final report; gives a test time to act while the trial runs).
Standard library and remotetune.trial only.
"""

import json
import os
import time

from remotetune import trial

start = time.time()
p = trial.get_next_parameter()
x = float(p.get("x", 0.5))
steps = int(p.get("steps", 2))
trial_dir = os.environ.get("REMOTETUNE_TRIAL_DIR", ".")
cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
host = os.environ.get("HOST_LABEL", "")
print("trial", trial.get_trial_id(), "host", host, "cuda", repr(cuda), flush=True)
with open(os.path.join(trial_dir, "reported.txt"), "a") as log:
    for i in range(steps):
        value = round(x * (i + 1) / steps, 6)
        trial.report_intermediate_result(value)
        log.write(f"{value!r}\n")
        log.flush()
        time.sleep(float(p.get("sleep", 0.3)))
    time.sleep(float(p.get("hold", 0)))
    end = time.time()
    record = {"default": x, "cuda": cuda, "host": host, "start": start, "end": end,
              "pid": os.getpid()}
    with open(os.path.join(trial_dir, "record.json"), "w") as out:
        json.dump(record, out)
    trial.report_final_result(record)
    log.write(f"{x!r}\n")
