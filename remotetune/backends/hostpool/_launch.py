"""The files a trial directory starts with on a host: its environment, parameters, script."""

from __future__ import annotations

from remotetune import commands
from remotetune.backends._base import LaunchSpec
from remotetune.backends.hostpool._session import HostSession, launch_files
from remotetune.model import HostSpec


def trial_env(spec: HostSpec, experiment_id: str, launch: LaunchSpec, trial_dir: str,
              code_dir: str) -> dict[str, str]:
    """The host's ``env``, then remotetune's and NNI's variables, then CUDA_VISIBLE_DEVICES."""
    trial = launch.trial
    env = dict(spec.env)
    env.update(
        {
            "REMOTETUNE_EXPERIMENT_ID": experiment_id,
            "REMOTETUNE_TRIAL_ID": trial.id,
            "REMOTETUNE_SEQUENCE_ID": str(trial.sequence),
            "REMOTETUNE_TRIAL_DIR": trial_dir,
            "REMOTETUNE_METRICS_FILE": f"{trial_dir}/metrics.jsonl",
            "REMOTETUNE_CODE_DIR": code_dir,
            "NNI_PLATFORM": "remotetune",
            "NNI_EXP_ID": experiment_id,
            "NNI_TRIAL_JOB_ID": trial.id,
            "NNI_TRIAL_SEQ_ID": str(trial.sequence),
            "NNI_SYS_DIR": trial_dir,
            "NNI_OUTPUT_DIR": trial_dir,
        }
    )
    if launch.placement.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = launch.placement.cuda_visible_devices
    # else no GPU scheduling: leave the host's own setting alone
    return env


def trial_files(session: HostSession, experiment_id: str, launch: LaunchSpec,
                trial_dir: str, code_dir: str) -> dict[str, str]:
    spec = session.spec
    # Only the trial API goes in front. PATH is the user's own (the local machine's as
    # remotetune was started, a remote login's): `python3` in a trialCommand is the one the
    # user's shell would run, never the interpreter remotetune itself runs in.
    prepend = {"PYTHONPATH": session.lib_dir}
    trial = launch.trial
    gpus = launch.placement.gpus if launch.placement.cuda_visible_devices is not None else ()
    reserve = {"indices": list(gpus), "per_gpu": spec.max_trials_per_gpu,
               "experiment": experiment_id, "trial": trial.id} if gpus else None
    return launch_files(
        parameters=dict(trial.parameters),
        parameter_id=trial.parameter_id,
        script=commands.trial_script(spec.setup, launch.trial_command),
        cwd=code_dir,
        env=trial_env(spec, experiment_id, launch, trial_dir, code_dir),
        unset_env=[],
        prepend_env=prepend,
        max_duration=launch.max_duration,
        kill_grace=launch.kill_grace,
        reserve=reserve,
    )
