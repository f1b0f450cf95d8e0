"""Slurm ops of the host agent: trials as sbatch jobs, run on a cluster's login node.

Standard library only, Python >= 3.8, shipped in the host bundle beside agent.py. The
agent registers :data:`OPS`; the controller builds the job script and the sbatch argv
(remotetune/slurm_commands.py) and parses what the ops return (remotetune/backends/
slurm/_jobs.py): the ops run the Slurm commands and hand their output back as it is.

A trial directory on the shared filesystem holds, besides the agent's usual files::

    job.sh       the sbatch script: the cluster's setup lines, then this module's ``run``
    job.json     {"job_id", "cluster", "submitted"}  (written right after sbatch)
    slurm.out    the job's own stdout and stderr (setup lines, launcher errors)

``python3 slurmops.py run TRIAL_DIR`` is the job's launcher on the compute node: it runs
``run.sh`` as the agent's launcher does for detached trials and writes ``pid.json`` and
``exit.json`` (with ``signal`` and ``reason`` when Slurm terminates it) in the trial dir.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

JOB_FILE = "job.json"
SQUEUE_FORMAT = "JobID:|,State:|,Reason:|,exit_code:|"  # exit_code: a raw wait status
# States after which a job never changes again (squeue shows them for MinJobAge).
FINAL_STATES = frozenset((
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "REVOKED", "SPECIAL_EXIT",
))
COMMAND_TIMEOUT = 60.0
ACCOUNTING_DISABLED = "accounting storage is disabled"
_accounting = {"enabled": None}  # None: not tried yet in this agent


def _host():
    """agent.py's helpers; imported late (agent.py imports this module while loading)."""
    from remotetune._host import agent  # type: ignore[attr-defined]

    return agent


def _run(argv, cwd=None):
    """Run a Slurm command (no shell): its exit code and output, or 127 if it is missing."""
    try:
        proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=COMMAND_TIMEOUT)
    except FileNotFoundError:
        return {"argv": argv, "code": 127, "stdout": "", "stderr": "%s: not found" % argv[0]}
    except subprocess.TimeoutExpired:
        return {"argv": argv, "code": 124, "stdout": "",
                "stderr": "%s: no answer in %d s" % (argv[0], COMMAND_TIMEOUT)}
    return {"argv": argv, "code": proc.returncode,
            "stdout": proc.stdout.decode("utf-8", "replace"),
            "stderr": proc.stderr.decode("utf-8", "replace")}


# --------------------------------------------------------------------------- submit


def op_slurm_submit(workdir, req, payload):
    """Write the trial's files and job.sh, then ``sbatch --parsable ARGV job.sh``.

    ``req``: trial_dir, files {name: text}, script (job.sh), argv (sbatch and its options,
    without the script). Submitting a trial dir twice returns the first job (``existing``).
    """
    host = _host()
    trial_dir = host._abspath(workdir, req["trial_dir"])
    os.makedirs(trial_dir, exist_ok=True)
    job_path = os.path.join(trial_dir, JOB_FILE)
    known = host.reads.read_json(job_path)
    if known:
        known["existing"] = True
        return known
    argv = [str(a) for a in req["argv"]]
    if not argv or os.path.basename(argv[0]) != "sbatch" or "--parsable" not in argv:
        raise ValueError("slurm_submit runs `sbatch --parsable ...` only, got %r" % argv[:2])
    for name, text in req.get("files", {}).items():
        host.write_atomic(os.path.join(trial_dir, name), text.encode("utf-8"))
    script = os.path.join(trial_dir, "job.sh")
    host.write_atomic(script, req["script"].encode("utf-8"), 0o755)
    result = _run(argv + [script], cwd=trial_dir)
    if result["code"] != 0:
        raise RuntimeError("sbatch failed (exit %s): %s" % (
            result["code"], (result["stderr"] or result["stdout"]).strip()[-2000:]))
    lines = [ln for ln in result["stdout"].splitlines() if ln.strip()]
    job_id, _, cluster = (lines[-1].strip() if lines else "").partition(";")
    if not job_id.isdigit():
        raise RuntimeError("cannot read the job id in sbatch's answer %r" % result["stdout"])
    info = {"job_id": job_id, "cluster": cluster or None, "submitted": time.time()}
    host.write_atomic(job_path, json.dumps(info).encode())
    info["existing"] = False
    info["stderr"] = result["stderr"]
    return info


# --------------------------------------------------------------------------- poll


def _queue(job_ids):
    """ONE squeue call for every job: {job_id: state} and the raw answer."""
    result = _run(["squeue", "--noheader", "--states=all", "--jobs=" + ",".join(job_ids),
                   "--Format=" + SQUEUE_FORMAT])
    states = {}
    if result["code"] == 0:
        for line in result["stdout"].splitlines():
            fields = line.split("|")
            if len(fields) >= 2:
                states[fields[0].strip()] = fields[1].strip()
    elif "Invalid job id" in result["stderr"]:
        result["code"] = 0  # none of them is known any more: all are past MinJobAge
    return result, states


def _finished(job_ids):
    """Where squeue has no final answer: sacct (one call), else scontrol per job."""
    if not job_ids:
        return None, {}
    sacct = None
    if _accounting["enabled"] is not False:
        sacct = _run(["sacct", "--noheader", "--parsable2", "--allocations",
                      "--jobs=" + ",".join(job_ids),
                      "--format=JobIDRaw,State,ExitCode,Reason"])
        disabled = ACCOUNTING_DISABLED in sacct["stderr"].lower()
        if sacct["code"] == 0 or disabled:
            _accounting["enabled"] = not disabled
        if sacct["code"] == 0:
            return sacct, {}
    scontrol = {}
    for job_id in job_ids:
        scontrol[job_id] = _run(["scontrol", "--oneliner", "show", "job", job_id])
    return sacct, scontrol


def op_slurm_poll(workdir, req, payload):
    """Job states (one squeue call) plus each trial's new metric lines and files.

    ``req``: jobs [{"job_id", "dir", "offset"}], max_bytes. Answer: squeue (the raw
    result), sacct and scontrol {job_id: result} for the jobs squeue showed no final state
    for, and per trial: lines, offset, more, exit, pid, exists.
    """
    host = _host()
    reads = host.reads
    max_bytes = int(req.get("max_bytes", 1 << 20))
    line_limit = int(req.get("line_limit", reads.LINE_LIMIT))
    jobs = req["jobs"]
    ids = [str(job["job_id"]) for job in jobs]
    squeue, states = _queue(ids) if ids else ({"code": 0, "stdout": "", "stderr": ""}, {})
    missing = [i for i in ids if squeue["code"] == 0 and states.get(i) is None]
    sacct, scontrol = _finished(missing)
    trials = []
    for job in jobs:
        trial_dir = host._abspath(workdir, job["dir"])
        exit_info = reads.valid_exit(reads.read_json(os.path.join(trial_dir, "exit.json")))
        state = states.get(str(job["job_id"]))
        done = exit_info is not None or state in FINAL_STATES or str(job["job_id"]) in missing
        lines, offset, more, skipped = reads.read_from(
            os.path.join(trial_dir, "metrics.jsonl"), int(job.get("offset", 0)), max_bytes,
            done, line_limit)
        trials.append({
            "job_id": str(job["job_id"]),
            "dir": job["dir"],
            "lines": lines,
            "skipped": skipped,
            "line_limit": line_limit,
            "offset": offset,
            "more": more,
            "exit": exit_info,
            "pid": reads.valid_pid(reads.read_json(os.path.join(trial_dir, "pid.json"))),
            "exists": os.path.isdir(trial_dir),
        })
    return {"squeue": squeue, "sacct": sacct, "scontrol": scontrol, "trials": trials,
            "time": time.time()}


# --------------------------------------------------------------------------- cancel


def op_slurm_cancel(workdir, req, payload):
    """``scancel`` the jobs (one call). Ids Slurm no longer knows are not an error."""
    ids = [str(i) for i in req["job_ids"]]
    for job_id in ids:
        if not job_id.isdigit():
            raise ValueError("not a job id: %r" % job_id)
    if not ids:
        return {"code": 0, "stdout": "", "stderr": ""}
    result = _run(["scancel"] + ids)
    if result["code"] != 0 and "Invalid job id" not in result["stderr"]:
        raise RuntimeError("scancel failed (exit %s): %s" % (result["code"],
                                                             result["stderr"].strip()))
    return result


OPS = {
    "slurm_submit": op_slurm_submit,
    "slurm_poll": op_slurm_poll,
    "slurm_cancel": op_slurm_cancel,
}


# --------------------------------------------------------------------------- the job


def run_job(trial_dir):
    """The job's launcher (foreground, on the compute node): run.sh, then exit.json.

    Slurm signals every process of the job on scancel and at the time limit (SIGTERM,
    SIGKILL KillWait seconds later): the launcher passes SIGTERM on to the trial's process
    group and records how the trial ended before the SIGKILL comes.
    """
    host = _host()
    with open(os.path.join(trial_dir, "launch.json"), "rb") as f:
        spec = json.loads(f.read().decode("utf-8"))
    env = host._trial_env(spec)  # with Slurm's CUDA_VISIBLE_DEVICES, as the agent builds it
    out = open(os.path.join(trial_dir, "stdout.log"), "ab")
    err = open(os.path.join(trial_dir, "stderr.log"), "ab")
    started = time.time()
    try:
        proc = subprocess.Popen([host._shell(), os.path.join(trial_dir, "run.sh")],
                                cwd=spec.get("cwd") or trial_dir, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    except OSError as exc:
        _write_exit(trial_dir, 127, None, "launch failed: %s" % exc)
        return 127
    out.close()
    err.close()
    signalled = []

    def forward(signum, frame):
        signalled.append(signum)
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    info = {"pid": proc.pid, "pgid": proc.pid, "launcher_pid": os.getpid(), "started": started,
            "hostname": socket.gethostname(), "ticks": host._start_ticks(proc.pid),
            "launcher_ticks": host._start_ticks(os.getpid()),
            "job_id": os.environ.get("SLURM_JOB_ID"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    host.write_atomic(os.path.join(trial_dir, "pid.json"), json.dumps(info).encode())
    reason = None
    max_duration = spec.get("max_duration")
    deadline = started + float(max_duration) if max_duration else None
    while proc.poll() is None:
        if deadline is not None and time.time() >= deadline and reason is None:
            reason = "timeout"
            host._terminate_group(proc.pid, float(spec.get("kill_grace", 10.0)),
                                  lambda: proc.poll() is not None)
        time.sleep(0.2)
    code = proc.returncode
    sig = -code if code < 0 else None
    if signalled and reason is None:
        reason = "terminated by Slurm (signal %d)" % signalled[0]
    elif code == host.SETUP_FAILED_EXIT:
        reason = "setup failed"
    _write_exit(trial_dir, code if code >= 0 else 128 + (sig or 0), sig, reason)
    return code if code >= 0 else 128 + (sig or 0)


def _write_exit(trial_dir, code, sig, reason):
    _host().write_atomic(os.path.join(trial_dir, "exit.json"), json.dumps(
        {"code": code, "signal": sig, "ended": time.time(), "reason": reason}).encode())


def main(argv):
    if len(argv) != 3 or argv[1] != "run":
        sys.stderr.write("usage: slurmops.py run TRIAL_DIR\n")
        return 2
    return run_job(os.path.abspath(argv[2]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
