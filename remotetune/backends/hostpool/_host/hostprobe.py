"""Run the host probe (remotetune.commands.PROBE_PY, sent by the controller) inside the agent,
so a run's connect needs no Python process of its own for it. Standard library, Python 3.8."""

import sys


def run(code, workdir):
    """The probe's facts (its ``out`` dict) for ``workdir``."""
    argv = sys.argv
    sys.argv = ["probe", workdir]  # the probe reads its workdir from argv, as under `python -c`
    try:
        scope = {"__name__": "remotetune_probe"}
        exec(compile(code, "<remotetune probe>", "exec"), scope)
        return scope["out"]
    finally:
        sys.argv = argv
