"""The report and the live page in a real browser: Debian's headless ``chromium``.

A real experiment runs through the CLI (tests/data/trial_curves.py, a fake nvidia-smi with
two GPUs on PATH); then ``remotetune report`` and ``remotetune serve`` pages are opened over
the DevTools protocol (tests/chromium.py). Each page must load with no console error and no
uncaught exception, show what the store holds, and draw: its screenshots are checked by their
pixels. Skipped only when no chromium is installed (scripts/test.sh installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chromium import Browser, find_chromium
from test_run_local import cli_env, open_store, run_cli

from remotetune.model import ExperimentStatus
from remotetune.store import Store

DATA = Path(__file__).parent / "data"
FAKE_NVIDIA_SMI = Path(__file__).parent / "bin" / "nvidia-smi"
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium; "
           "scripts/test.sh installs it)",
)

SPACE = {
    "lr": {"_type": "loguniform", "_value": [0.0005, 0.2]},
    "dropout": {"_type": "uniform", "_value": [0.0, 0.6]},
    "batch_size": {"_type": "choice", "_value": [16, 64, 128]},
    "optimizer": {"_type": "choice", "_value": [
        {"_name": "sgd", "momentum": {"_type": "uniform", "_value": [0.5, 0.99]}},
        {"_name": "adam"},
    ]},
}
ROWS_JS = """Array.from(document.querySelectorAll('#trials-table tbody tr')).map(r => [
  r.dataset.trialId,
  r.querySelector('td[data-key=status]').textContent,
  (r.querySelector('td[data-key=final]').dataset.value || null)])"""


def gpu_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shutil.copy2(FAKE_NVIDIA_SMI, bin_dir / "nvidia-smi")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = cli_env(tmp_path)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def write_experiment(tmp_path: Path, trials: int, step_sleep: float, max_duration: str) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    shutil.copy(DATA / "trial_curves.py", code / "train.py")
    space = {**SPACE, "step_sleep": {"_type": "choice", "_value": [step_sleep]},
             "steps": {"_type": "choice", "_value": [12]}}
    config = {
        "experimentName": "browser-test", "searchSpace": space,
        "trialCommand": f"{sys.executable} train.py", "trialCodeDirectory": "code",
        "trialConcurrency": 2, "trialGpuNumber": 1, "maxTrialNumber": trials,
        "maxTrialDuration": max_duration, "pollInterval": 0.05,
        "tuner": {"name": "Random", "classArgs": {"optimize_mode": "maximize"}},
    }
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def not_blank(png: Path, min_colors: int = 64) -> dict[str, float]:
    """Distinct colours and the share of pixels unlike the background; fails when blank."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 24) or []
    total = sum(n for n, _ in colors)
    background = max(n for n, _ in colors)
    stats = {"colors": len(colors), "ink": 1 - background / total}
    assert stats["colors"] >= min_colors and stats["ink"] >= 0.03, (png, stats)
    return stats


def colored_pixels(png: Path) -> int:
    """Saturated pixels: drawn data (every status colour), not the grey axes and text."""
    from PIL import Image

    with Image.open(png) as im:
        raw = im.convert("RGB").tobytes()
    return sum(1 for i in range(0, len(raw), 3)
               if max(raw[i:i + 3]) - min(raw[i:i + 3]) > 40)


def assert_figures_drawn(browser: Browser, tmp_path: Path) -> None:
    """The curves and the (WebGL) parallel coordinates are drawn, judged by their pixels."""
    assert not browser.evaluate("document.body.innerText.includes('WebGL is not supported')")
    for fig in ("curves", "parallel"):
        png = browser.element_screenshot(f"#fig-{fig}", tmp_path / f"{fig}.png")
        assert colored_pixels(png) > 300, f"{fig}: nothing drawn"


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as b:
        yield b


def expected_rows(store: Store, exp_id: str) -> list[list[Any]]:
    return [[t.id, t.status.value, None if t.final is None else repr(t.final)]
            for t in store.trials(exp_id)]


def dom_rows(browser: Browser) -> list[list[Any]]:
    rows = browser.evaluate(ROWS_JS)
    # JS prints numbers its own way: compare as floats
    return [[i, s, None if f is None else repr(float(f))] for i, s, f in rows]


def test_report_html_in_chromium(tmp_path: Path, browser: Browser) -> None:
    # batch size 16 runs 6x slower: 2.2 s, stopped at 1.5 s; the others take 0.4 s
    path = write_experiment(tmp_path, trials=8, step_sleep=0.03, max_duration="1.5s")
    env = gpu_env(tmp_path)
    result = subprocess.run([sys.executable, "-m", "remotetune.cli", "run", str(path),
                             "--plain"], env=env, capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    with open_store(tmp_path) as store:
        exp_id = store.experiments()[0].id
        rows = expected_rows(store, exp_id)
        trials = store.trials(exp_id)
    assert len(rows) == 8 and any(t.gpus for t in trials)
    out = tmp_path / "report.html"
    result = run_cli(tmp_path, "report", exp_id, "-o", str(out))
    assert result.returncode == 0, result.stderr

    browser.open(out.as_uri())
    assert browser.wait_for("document.getElementById('report').dataset.rendered") == "1"
    assert browser.errors() == []
    assert dom_rows(browser) == rows
    data = browser.evaluate("JSON.parse(document.getElementById('report-data').textContent)")
    assert [t["id"] for t in data["trials"]] == [r[0] for r in rows]
    assert browser.evaluate("document.querySelectorAll('.js-plotly-plot').length") == 5
    assert browser.evaluate("document.querySelectorAll('#fig-timeline .bars path').length") \
        >= sum(len(t.gpus) or 1 for t in trials if t.started_at)
    # the table sorts by a clicked column
    browser.evaluate("document.querySelector('#trials-table th[data-key=final]').click()")
    finals = [None if f is None else float(f) for _, _, f in browser.evaluate(ROWS_JS)]
    known = [f for f in finals if f is not None]
    assert finals == known + [None] * (len(finals) - len(known)) and known == sorted(known)
    browser.evaluate("document.querySelector('#trials-table th[data-key=final]').click()")
    finals = [None if f is None else float(f) for _, _, f in browser.evaluate(ROWS_JS)]
    assert finals[:len(known)] == sorted(known, reverse=True)  # empty finals stay last
    assert browser.errors() == []

    not_blank(browser.screenshot(tmp_path / "report.png"))
    assert_figures_drawn(browser, tmp_path)
    timeline = browser.element_screenshot("#fig-timeline", tmp_path / "timeline.png")
    not_blank(timeline, min_colors=16)


def start_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "remotetune.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, start_new_session=True)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_live_page_follows_a_running_experiment(tmp_path: Path, browser: Browser) -> None:
    path = write_experiment(tmp_path, trials=6, step_sleep=0.1, max_duration="3s")
    env = gpu_env(tmp_path)
    run = start_cli(tmp_path, env, "run", str(path), "--plain", "--on-interrupt", "kill")
    serve: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while True:  # serve opens the store read-only: it must exist first
            if (tmp_path / "home" / "remotetune.db").exists():
                with Store.open_readonly(tmp_path / "home" / "remotetune.db") as store:
                    exps = store.experiments()
                    if exps and store.trials(exps[0].id):
                        exp_id = exps[0].id
                        break
            assert time.monotonic() < deadline, "the experiment never started"
            time.sleep(0.2)
        serve = start_cli(tmp_path, env, "serve", "--port", "0", "--refresh", "0.5")
        assert serve.stdout is not None
        line = serve.stdout.readline()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        assert match, line + (serve.stderr.read() if serve.stderr else "")
        base = match.group(1)

        browser.open(base)  # the experiment list
        assert browser.evaluate("document.querySelectorAll('#experiments a').length") == 1
        assert browser.errors() == []
        browser.open(base + f"exp/{exp_id}")
        browser.wait_for("document.getElementById('report').dataset.rendered")
        assert "RUNNING" in browser.evaluate("document.getElementById('summary').textContent")
        assert run.wait(240) == 0, run.stderr.read() if run.stderr else ""
        with open_store(tmp_path) as store:
            assert store.experiment(exp_id).status is ExperimentStatus.DONE
            rows = expected_rows(store, exp_id)
        deadline = time.monotonic() + 30
        while dom_rows(browser) != rows:
            assert time.monotonic() < deadline, (dom_rows(browser), rows)
            time.sleep(0.3)
        assert int(browser.evaluate("document.getElementById('report').dataset.rendered")) > 1
        assert "live: updated" in browser.evaluate(
            "document.getElementById('live-status').textContent")
        assert "DONE" in browser.evaluate("document.getElementById('summary').textContent")
        assert browser.errors() == []
        not_blank(browser.screenshot(tmp_path / "live.png"))
        assert_figures_drawn(browser, tmp_path)
        payload = json.loads(subprocess.run(
            [sys.executable, "-c", "import sys,urllib.request;"
             f"sys.stdout.write(urllib.request.urlopen('{base}api/exp/{exp_id}').read().decode())"],
            capture_output=True, text=True, timeout=60, env=env).stdout)
        assert [t["id"] for t in payload["trials"]] == [r[0] for r in rows]
    finally:
        stop(run)
        if serve is not None:
            stop(serve)


def test_the_browser_check_sees_errors_and_blank_pages(tmp_path: Path, browser: Browser) -> None:
    """The checks above would catch a broken page: console errors, exceptions, blankness."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>"
                    "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    browser.open(page.as_uri())
    errors = browser.errors()
    assert any("boom" in e for e in errors) and any("undefinedFunction" in e for e in errors)
    with pytest.raises(AssertionError):
        not_blank(browser.screenshot(tmp_path / "blank.png"))
    csp = tmp_path / "csp.html"
    csp.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'>"
                   "<meta http-equiv='Content-Security-Policy' content=\"script-src "
                   "'unsafe-inline'\"></head><body><script>try { eval('1') } catch (e) {}"
                   "</script></body></html>")
    browser.open(csp.as_uri())
    deadline = time.monotonic() + 10
    while not any("CSP violation" in e for e in browser.errors()):
        assert time.monotonic() < deadline, browser.errors()
        time.sleep(0.1)


def test_report_of_an_nni_experiment_in_chromium(tmp_path: Path, browser: Browser) -> None:
    from test_nni_import import build_v2

    nni = build_v2(tmp_path / "nni.sqlite")
    result = run_cli(tmp_path, "import-nni", str(nni))
    assert result.returncode == 0, result.stderr
    with open_store(tmp_path) as store:
        exp_id = store.experiments()[0].id
        rows = expected_rows(store, exp_id)
    out = tmp_path / "nni.html"
    assert run_cli(tmp_path, "report", exp_id, "-o", str(out)).returncode == 0
    browser.open(out.as_uri())
    browser.wait_for("document.getElementById('report').dataset.rendered")
    assert browser.errors() == []
    assert dom_rows(browser) == rows
    not_blank(browser.screenshot(tmp_path / "nni.png"))
