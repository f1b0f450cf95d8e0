"""NNI's trial API as trial code sees it on a host: the bundle's ``nni`` package on
PYTHONPATH, with NNI absent (remotetune's stand-in) and with the real NNI 3.0 installed in
the trial's Python (its own modules load, the trial API reports to remotetune).

The real-NNI cases need a Python with NNI 3.0 installed: ``$REMOTETUNE_NNI_PYTHON``, else
``.nni-venv/bin/python`` (``scripts/test.sh`` builds it), else ``/tmp/nni-venv/bin/python``;
skipped when there is none.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from remotetune.backends.hostpool._bundle import bundle
from remotetune.nni_compat.utils import merge_parameter

ROOT = Path(__file__).resolve().parent.parent
NNI_PYTHON = next((str(p) for p in (os.environ.get("REMOTETUNE_NNI_PYTHON"),
                                    ROOT / ".nni-venv/bin/python", "/tmp/nni-venv/bin/python")
                   if p and os.path.exists(p)), "")
needs_nni = pytest.mark.skipif(not NNI_PYTHON, reason="no Python with NNI installed "
                               "($REMOTETUNE_NNI_PYTHON, .nni-venv or /tmp/nni-venv)")

TRIAL = textwrap.dedent('''
    import argparse, json, sys
    import nni
    import nni.trial
    import nni.utils
    from nni.typehint import Parameters
    from nni.utils import merge_parameter
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--name", default=None)
    args = merge_parameter(parser.parse_args([]), nni.get_next_parameter())
    out = {
        "nni": nni.__file__, "args": vars(args), "lr": nni.get_current_parameter("lr"),
        "all": nni.get_current_parameter(), "ids": [nni.get_experiment_id(),
        nni.get_trial_id(), nni.get_sequence_id()], "trial": nni.trial.get_trial_id(),
    }
    nni.report_intermediate_result(np.float32(0.5))
    nni.trial.report_intermediate_result(np.int64(2))
    nni.report_intermediate_result(np.array(0.75))
    try:
        nni.report_intermediate_result(np.array([0.1]))
    except TypeError as exc:
        out["refused"] = str(exc)
    nni.report_final_result({"default": np.float64(0.875), "loss": np.float32(0.25)})
    for name in sys.argv[1:]:
        __import__(name)
        out.setdefault("imported", []).append(sys.modules[name].__file__)
    print(json.dumps(out))
''')


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A trial directory and the bundle unpacked as on a host (tmp_path/lib)."""
    _, data = bundle()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp_path / "lib", filter="data")
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    (trial_dir / "parameters.json").write_text(json.dumps(
        {"parameter_id": 3, "parameters": {"lr": 0.1, "batch_size": 32, "name": "a"}}))
    (tmp_path / "trial.py").write_text(TRIAL)
    return tmp_path


def run_trial(host: Path, python: str, *imports: str,
              pythonpath: str | None = None) -> tuple[dict, list[dict], str]:
    trial_dir = host / "trial"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NNI_", "REMOTETUNE_"))}
    env.update({
        "PYTHONPATH": pythonpath or str(host / "lib"),
        "REMOTETUNE_EXPERIMENT_ID": "exp1", "REMOTETUNE_TRIAL_ID": "tr7",
        "REMOTETUNE_SEQUENCE_ID": "4", "REMOTETUNE_TRIAL_DIR": str(trial_dir),
        "REMOTETUNE_METRICS_FILE": str(trial_dir / "metrics.jsonl"),
        "NNI_PLATFORM": "remotetune", "NNI_EXP_ID": "exp1", "NNI_TRIAL_JOB_ID": "tr7",
        "NNI_TRIAL_SEQ_ID": "4", "NNI_SYS_DIR": str(trial_dir), "NNI_OUTPUT_DIR": str(trial_dir),
    })
    result = subprocess.run([python, str(host / "trial.py"), *imports], env=env, cwd=trial_dir,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = (trial_dir / "metrics.jsonl").read_text().splitlines()
    return json.loads(result.stdout.splitlines()[-1]), [json.loads(x) for x in lines], \
        result.stderr


def check_api(out: dict, metrics: list[dict]) -> None:
    assert out["args"] == {"lr": 0.1, "batch_size": 32, "name": "a"}
    assert out["lr"] == 0.1 and out["all"] == {"lr": 0.1, "batch_size": 32, "name": "a"}
    assert out["ids"] == ["exp1", "tr7", 4] and out["trial"] == "tr7"
    assert "0-d array" in out["refused"]
    assert [(m["type"], m["value"]) for m in metrics] == [
        ("PERIODICAL", 0.5), ("PERIODICAL", 2), ("PERIODICAL", 0.75),
        ("FINAL", {"default": 0.875, "loss": 0.25})]


def test_the_stand_in_serves_the_whole_trial_api(host: Path) -> None:
    out, metrics, _ = run_trial(host, sys.executable, "nni.typehint")
    assert out["nni"] == str(host / "lib" / "nni" / "__init__.py")
    check_api(out, metrics)


@needs_nni
def test_with_the_real_nni_its_modules_load_and_metrics_reach_remotetune(host: Path) -> None:
    out, metrics, _ = run_trial(host, NNI_PYTHON, "nni.experiment",
                                "nni.algorithms.hpo.medianstop_assessor")
    assert "site-packages" in out["nni"] and str(host) not in out["nni"]
    assert all("site-packages" in path for path in out["imported"])
    check_api(out, metrics)


def test_a_broken_nni_install_falls_back_to_the_stand_in(host: Path) -> None:
    broken = host / "site" / "nni"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('half-installed nni')\n")
    path = os.pathsep.join([str(host / "lib"), str(host / "site")])
    out, metrics, stderr = run_trial(host, sys.executable, pythonpath=path)
    assert out["nni"] == str(host / "lib" / "nni" / "__init__.py")
    assert "half-installed nni" in stderr
    check_api(out, metrics)


# --- merge_parameter: NNI's semantics ----------------------------------------------------------


def test_merge_parameter_overrides_a_namespace_or_a_dict_in_place() -> None:
    import argparse

    ns = argparse.Namespace(lr=0.01, epochs=3, name=None, act="relu")
    assert merge_parameter(ns, {"lr": 1, "epochs": 5, "name": 7}) is ns
    assert vars(ns) == {"lr": 1.0, "epochs": 5, "name": 7, "act": "relu"}
    assert isinstance(ns.lr, float)
    base = {"lr": 0.1, "act": "relu"}
    assert merge_parameter(base, {"act": "tanh"}) == {"lr": 0.1, "act": "tanh"}
    assert merge_parameter(base, None) is base


@pytest.mark.parametrize(("base", "override", "message"), [
    ({"lr": 0.1}, {"momentum": 0.5}, "Key 'momentum' not found in base parameters."),
    ({"epochs": 3}, {"epochs": 2.5}, 'Expected "epochs" in override parameters to have type '
                                     'int, but found float'),
    ({"act": "relu"}, {"act": 1}, "type str, but found int"),
])
def test_merge_parameter_refuses_what_nni_refuses(base: dict, override: dict,
                                                  message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        merge_parameter(base, override)


@needs_nni
def test_merge_parameter_agrees_with_nni() -> None:
    cases = [({"lr": 0.1, "n": 1, "s": "x", "z": None, "b": True},
              {"lr": 2, "n": 3, "s": "y", "z": [1], "b": False}),
             ({"n": 1}, {"n": True}), ({"b": True}, {"b": 1}), ({"n": 1}, {"n": 1.5}),
             ({"f": 1.0}, {"f": False}), ({"a": 1}, {"q": 1})]
    script = ("import json, sys\nfrom nni.utils import merge_parameter\nout = []\n"
              "for base, over in json.loads(sys.argv[1]):\n"
              "    try:\n        out.append(['ok', merge_parameter(base, over)])\n"
              "    except ValueError as e:\n        out.append(['error', str(e)])\n"
              "print(json.dumps(out))\n")
    result = subprocess.run([NNI_PYTHON, "-c", script, json.dumps(cases)], capture_output=True,
                            text=True, timeout=120, check=True)
    theirs = json.loads(result.stdout.splitlines()[-1])
    ours = []
    for base, over in json.loads(json.dumps(cases)):
        try:
            ours.append(["ok", merge_parameter(base, over)])
        except ValueError as exc:
            ours.append(["error", str(exc)])
    assert ours == theirs
