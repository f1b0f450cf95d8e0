"""What the CLI's commands share for output: consoles, strict JSON, exit truths.

Consoles never interpret rich markup in what they print (``markup=False``): text from users,
trials and hosts is data (see :mod:`remotetune.view._safe`). When standard output is not a
terminal nothing is wrapped (``soft_wrap``), so a piped line of JSON stays one line.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from remotetune import jsonsafe
from remotetune.model import HostSpec, TrialRecord, TrialStatus
from remotetune.view._safe import clean

if TYPE_CHECKING:  # rich is imported when something is printed, not at start-up (40-70 ms)
    from rich.console import Console
    from rich.text import Text

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HOST, EXIT_STOPPED = 0, 1, 2, 3, 130

PIPE_WIDTH = 4000


@functools.lru_cache(maxsize=1)
def _console_class() -> type[Console]:
    from rich.console import Console

    class _Console(Console):
        """A console that goes quiet when its reader closes the pipe (``remotetune ls |
        head``) instead of raising SystemExit(1) from whatever thread printed (rich's
        default)."""

        def on_broken_pipe(self) -> None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.file.fileno())
            os.close(devnull)
            self.quiet = True

    return _Console


def surely_not_terminal(stream: Any) -> bool:
    """True where rich's ``Console.is_terminal`` would say False for ``stream``, decided
    without importing rich (False: ask rich). Its rules: ``TTY_COMPATIBLE`` 0 or 1 decides,
    then a set ``FORCE_COLOR``, then ``isatty()``."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "0"
    if os.environ.get("FORCE_COLOR") is not None:
        return False
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def open_store(readonly: bool = False) -> Any:
    """The default store (``$REMOTETUNE_HOME``); imported here, not at start-up. Readers
    (``readonly``: ls, trials, export...) never migrate or write it."""
    from remotetune.store import Store

    return Store.open_default(readonly=readonly)


def make_console(*, stderr: bool = False, layout: bool = False) -> Console:
    """A console for ``stderr`` or stdout. Not a terminal: lines are never wrapped and
    tables take their natural width, unless ``layout`` (the live view, drawn for a person
    at the terminal's or $COLUMNS' width)."""
    console = _console_class()(stderr=stderr, markup=False)
    if not console.is_terminal:
        console.soft_wrap = True
        if not layout:
            console.width = PIPE_WIDTH
    return console


def print_json(data: Any) -> None:
    """Strict RFC 8259 JSON on stdout; non-finite numbers become null, noted on stderr."""
    text, replaced = jsonsafe.dumps(data, indent=2, sort_keys=True)
    sys.stdout.write(text + "\n")
    if replaced:
        print(f"note: {replaced} non-finite number(s) written as null", file=sys.stderr)


def error_text(message: str, label: str = "error:") -> Text:
    from rich.text import Text

    return Text.assemble((label, "bold red"), " ", clean(message, block=True))


def hide_secrets(hosts: Sequence[HostSpec]) -> tuple[HostSpec, ...]:
    """Local hosts set to hide every ``passwordEnv``/``passphraseEnv`` variable of ``hosts``
    from their processes (the trials), so a trial that prints its environment leaks none."""
    names = tuple(sorted({n for h in hosts for n in (h.password_env, h.passphrase_env) if n}))
    if not names:
        return tuple(hosts)
    return tuple(dataclasses.replace(h, hidden_env=names) if h.local else h for h in hosts)


def all_failed(trials: list[TrialRecord]) -> TrialRecord | None:
    """The first failed trial when no trial of a finished experiment got anywhere.

    "Anywhere": succeeded, or was stopped early by an assessor. Trials lost with their host
    (re-queued) count as failed attempts. None when some trial did not fail, or none ran.
    """
    failed = [t for t in trials if t.status is TrialStatus.FAILED]
    if not failed or any(t.status not in (TrialStatus.FAILED, TrialStatus.LOST) for t in trials):
        return None
    return min(failed, key=lambda t: t.sequence)


def failure_summary(trials: list[TrialRecord], first: TrialRecord) -> str:
    tail = " | ".join((first.stderr_tail or "").strip().splitlines()[-3:])
    why = first.message or (f"exit code {first.exit_code}" if first.exit_code is not None
                            else "failed")
    text = f"all {len(trials)} trials failed; the first, {first.id}: {why}"
    return clean(text + (f"\n  stderr: {tail}" if tail else ""), block=True)


def trial_json(t: TrialRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "sequence": t.sequence,
        "status": t.status.value,
        "parameters": dict(t.parameters),
        "parameter_id": t.parameter_id,
        "final": t.final,
        "best_intermediate": t.best_intermediate,
        "latest_intermediate": t.latest_intermediate,
        "intermediate_count": t.intermediate_count,
        "host": t.host,
        "gpus": list(t.gpus),
        "attempt": t.attempt,
        "retry_of": t.retry_of,
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "duration": (t.ended_at - t.started_at) if t.ended_at and t.started_at else None,
        "exit_code": t.exit_code,
        "message": t.message,
        # an early-stopped trial: the step its curve ends at, and why (its message)
        "early_stopped": ({"step": t.intermediate_count, "reason": t.message}
                          if t.status is TrialStatus.EARLY_STOPPED else None),
    }


def exit_now(code: int) -> NoReturn:
    """End the process at once: flush stdout, stderr and the log handlers, then ``os._exit``.

    The interpreter's own teardown (freeing every module and object a run loaded: paramiko,
    sqlite_utils, rich, the tuners, and joining idle host-worker threads) took 0.5-0.8 s on a
    busy machine after the work was done, a tenth of a 40-trial run's wall time. Commands
    close their store before they return; the hosts' agents see their channels close when
    the process ends, as they did before.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`... | head`): nothing left to say
            pass
    logging.shutdown()
    os._exit(code)


def entry() -> NoReturn:
    """The `remotetune` command: :func:`remotetune.cli.main`, then :func:`exit_now`."""
    from remotetune.cli import main

    exit_now(main())
