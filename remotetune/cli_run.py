"""``remotetune run`` and ``resume``: the controller in the foreground.

The hosts start connecting (``Backend.warm``) as soon as the experiment and machines files
are read; the controller's imports, the store and the code snapshot are done meanwhile.
Signals only set flags; the main thread decides what Ctrl-C means.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remotetune.cli_homes import home_note, use_experiment_home
from remotetune.cli_support import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    all_failed,
    error_text,
    failure_summary,
    hide_secrets,
    make_console,
    open_store,
)
from remotetune.cli_update import resume_config
from remotetune.errors import ConfigError, StoreError
from remotetune.home import default_home
from remotetune.lock import ExperimentLock
from remotetune.model import ExperimentStatus, HostSpec
from remotetune.view._safe import clean

if TYPE_CHECKING:
    from rich.console import Console


class _Interrupts:
    """Signals only set flags; the main thread decides what to do."""

    def __init__(self) -> None:
        self.count = 0
        self.signal: int | None = None
        self.event = threading.Event()

    def handler(self, signum: int, frame: object) -> None:
        self.count += 1
        self.signal = signum
        self.event.set()


def _machines(args: argparse.Namespace, config: Any) -> tuple[HostSpec, ...]:
    from remotetune import config as cfg

    if args.machines:
        return cfg.load_machines(args.machines)
    if config.machines:
        return tuple(config.machines)
    return (cfg.local_machine(None),)


def _run_controller(controller: Any, args: argparse.Namespace, console: Console) -> int:
    from remotetune.controller import StopMode

    interactive = sys.stdin.isatty() and console.is_terminal
    use_view = console.is_terminal and not args.plain
    interrupts = _Interrupts()
    old = {s: signal.signal(s, interrupts.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["status"] = controller.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="controller", daemon=True)
    view = None
    if use_view:
        from remotetune.view import LiveView, Snapshot

        def snapshot() -> Snapshot:
            s = controller.view_state()
            return Snapshot(experiment=s.experiment, trials=s.trials, hosts=s.hosts,
                            events=s.events, now=time.time(), waiting_reason=s.waiting_reason)

        view = LiveView(snapshot, console=console)
    try:
        thread.start()
        if view is not None:
            _wait_for_start(controller, thread)
            view.__enter__()
        while thread.is_alive():
            thread.join(0.2)
            if interrupts.event.is_set():
                interrupts.event.clear()
                mode = _stop_mode(args, interrupts, interactive, console, view)
                if mode is not None:
                    controller.request_stop(StopMode(mode))
    finally:
        if view is not None:
            view.__exit__(None, None, None)
        for s, h in old.items():
            signal.signal(s, h)
    if "error" in outcome:
        raise outcome["error"]
    return _report_outcome(controller, outcome["status"], console)


def _report_outcome(controller: Any, status: ExperimentStatus, console: Console) -> int:
    """The closing lines of run/resume, and the exit status they stand for."""
    exp = controller.experiment
    console.print(clean(f"experiment {exp.id} {status.value.lower()}: {exp.message or ''}"
                        ).rstrip())
    best = controller.store.best_trial(exp.id)
    if best is not None:
        console.print(f"best trial {best.id}: final={best.final:.6g} "
                      f"{json.dumps(dict(best.parameters), sort_keys=True)}", highlight=False,
                      markup=False)
    if status is ExperimentStatus.DONE:
        trials = controller.store.trials(exp.id)
        first = all_failed(trials)
        if first is not None:  # the experiment ran, but nothing in it worked
            make_console(stderr=True).print(error_text(failure_summary(trials, first)))
            return EXIT_FAILED
        return EXIT_OK
    if status is ExperimentStatus.STOPPED:
        console.print(f"resume with: remotetune resume {exp.id}")
        return EXIT_STOPPED
    return EXIT_FAILED


def _wait_for_start(controller: Any, thread: threading.Thread) -> None:
    while thread.is_alive() and controller.experiment is None:
        time.sleep(0.01)


def _stop_mode(args: argparse.Namespace, interrupts: _Interrupts, interactive: bool,
               console: Console, view: Any) -> str | None:
    if interrupts.signal == signal.SIGTERM or interrupts.count > 1:
        return args.on_interrupt if args.on_interrupt != "ask" else "kill"
    if args.on_interrupt != "ask":
        return str(args.on_interrupt)
    if not interactive:
        return "kill"
    if view is not None:
        view.__exit__(None, None, None)
    try:
        answer = console.input(
            "\n[bold]Interrupted.[/] \\[k]ill the running trials, \\[l]eave them running for "
            "`remotetune resume`, or \\[c]ontinue? \\[k/l/c] "
        ).strip().lower()
    except (EOFError, KeyboardInterrupt):
        answer = "k"
    if answer.startswith("c"):
        interrupts.count = 0
        if view is not None:
            view.__enter__()
        return None
    return "leave" if answer.startswith("l") else "kill"


def _on_event_printer(console: Console, plain: bool) -> Any:
    def on_event(ev: Any) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(ev.time))
        line = f"{stamp} {ev.level.upper():7} {clean(ev.message)}"
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    return on_event if plain or not console.is_terminal else None


@contextmanager
def _warmed_backends(config: Any, hosts: Sequence[HostSpec]) -> Iterator[list[Any]]:
    """The experiment's backends, already connecting to their hosts (``Backend.warm``)
    while this process goes on with the store, the controller's imports and the code
    snapshot: the connects' waiting (network, sshd, the agent's start) overlaps them.
    Closed when the command ends (a controller that ran them closed them already)."""
    from remotetune.backends import default_backends

    backends = default_backends(config, hosts, home=default_home())
    for backend in backends:
        backend.warm()
    try:
        yield backends
    finally:
        for backend in backends:
            backend.close()


def cmd_run(args: argparse.Namespace) -> int:
    from remotetune import config as cfg
    from remotetune.config import host_to_public_dict

    path = args.experiment_file or "experiment.yml"
    if not os.path.exists(path):
        raise ConfigError(
            "experiment file not found", file=path,
            hint="pass the experiment file: remotetune run path/to/experiment.yml",
        )
    config, check_algorithms = cfg.load_experiment_then_check(path)  # tuner: after warm
    home = use_experiment_home(config)  # the file's logDir / experimentWorkingDirectory
    from remotetune.symlinks import check_symlinks

    check_symlinks(config.trial_code_directory, follow=config.follow_symlinks, file=path)
    hosts = hide_secrets(_machines(args, config))
    with _warmed_backends(config, hosts) as backends:
        check_algorithms()  # while the hosts connect: building a tuner can import optuna
        from remotetune.controller import Controller, ControllerOptions

        console = make_console()
        with open_store() as store:  # closed before the process ends (cli_support.exit_now)
            controller = Controller(
                config, hosts, store, ControllerOptions(home=default_home(), seed=args.seed),
                on_event=_on_event_printer(console, args.plain), backends=backends,
            )
            exp = controller.create([host_to_public_dict(h) for h in hosts])
            with ExperimentLock(default_home(), exp.id):
                console.print(clean(f"experiment {exp.id} ({exp.name}): "
                                    f"{config.trial_concurrency} at a time on {len(hosts)} "
                                    f"host(s); store {store.path}"), highlight=False)
                if home is not None:
                    console.print(clean(home_note(home)), highlight=False, markup=False)
                return _run_controller(controller, args, console)


def cmd_resume(args: argparse.Namespace) -> int:
    with open_store() as store:
        exp = store.experiment(args.experiment)
        if exp.source != "remotetune":
            raise StoreError(f"experiment {exp.id} was imported from NNI and cannot be resumed")
        with ExperimentLock(default_home(), exp.id):  # one controller per experiment
            return _resume(args, store, exp)


def _resume(args: argparse.Namespace, store: Any, exp: Any) -> int:
    from remotetune import config as cfg

    config = cfg.parse_experiment(exp.config, file=exp.config_file,
                                  base_dir=Path(exp.config_file).parent if exp.config_file
                                  else None)
    config = resume_config(args, config, exp)  # --max-trials, --max-duration
    if args.machines:
        hosts = cfg.load_machines(args.machines)
    elif exp.machines:
        hosts = cfg.parse_machines({"machines": [dict(m) for m in exp.machines]},
                                  file=f"(machines of experiment {exp.id})")
    else:
        hosts = (cfg.local_machine(None),)
    hosts = hide_secrets(hosts)
    with _warmed_backends(config, hosts) as backends:
        from remotetune.controller import Controller, ControllerOptions

        console = make_console()
        plain = args.plain or not console.is_terminal
        controller = Controller(
            config, hosts, store, ControllerOptions(home=default_home(), seed=args.seed),
            experiment=exp, on_event=_on_event_printer(console, plain), backends=backends)
        console.print(clean(f"resuming experiment {exp.id} ({exp.name})"), highlight=False)
        return _run_controller(controller, args, console)


