"""A trial that writes hostile metric lines straight into its metrics file, then a final.

Parameter ``mode``: "long" (a 1.2 MB line, a 15 MiB line, a line over the 16 MiB limit),
"garbage" (lines no decoder may crash on), "api" (the trial API refuses what is not a
finite number), "fifo" (turns its metrics file into a FIFO), "env" (prints its environment).
"""

import json
import os
import sys

from remotetune import trial

p = trial.get_next_parameter()
mode = p.get("mode", "long")
path = os.environ["REMOTETUNE_METRICS_FILE"]


def raw(text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


if mode == "long":
    trial.report_intermediate_result({"default": 0.5, "l": [0.123456789] * 100000})
    trial.report_intermediate_result({"default": 0.6, "pad": "x" * (15 << 20)})
    raw(json.dumps({"type": "PERIODICAL", "value": {"default": 0.7, "pad": "y" * (17 << 20)}}))
    trial.report_final_result(0.75)
elif mode == "garbage":
    deep = "[" * 100000 + "]" * 100000
    for line in ['{"type": "FINAL", "value": ' + "1" + "0" * 400 + "}",
                 '{"type": "PERIODICAL", "value": ' + deep + "}",
                 '{"type": "FINAL", "value": Infinity}',
                 '{"type": "FINAL", "value": 1e999}',
                 '{"type": "FINAL", "value": NaN}',
                 '{"type": "FINAL", "value": {"default": -Infinity}}',
                 '{"type": "FINAL", "value": true}',
                 '[1, 2]',
                 '{"type": "FINAL", "value": {"nodefault": 1}}']:
        raw(line)
    trial.report_final_result(0.25)
elif mode == "api":
    for bad in (float("inf"), -float("inf"), 10**400, {"default": 10**400}):
        try:
            trial.report_final_result(bad)
        except ValueError as exc:
            print("refused:", exc)
    trial.report_final_result(0.5)
elif mode == "fifo":  # its metrics file becomes a FIFO: no read may block the agent
    os.unlink(path) if os.path.exists(path) else None
    os.mkfifo(path)
    sys.exit(0)
elif mode == "env":
    for key, value in sorted(os.environ.items()):
        print(f"{key}={value}")
    trial.report_final_result(0.5)
sys.exit(0)
