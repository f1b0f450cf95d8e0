"""Drawing the view live: attached to a store (``remotetune view``) or fed by the controller.

Both pull a snapshot when they draw; neither drives the program, writes or talks to a host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from rich.console import Console, ConsoleOptions, RenderableType
from rich.live import Live
from rich.segment import Segment
from rich.text import Text

from remotetune.errors import ExperimentNotFound, StoreError
from remotetune.view._render import render
from remotetune.view._snapshot import Snapshot

logger = logging.getLogger(__name__)


def watch(
    store_path: Path,
    experiment_id: str,
    *,
    console: Console,
    refresh_per_second: float = 2.0,
    stop: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Draw ``experiment_id`` from the store at ``store_path`` until it finishes.

    Re-reads a snapshot ``refresh_per_second`` times a second. Returns once the experiment is
    finished (after drawing it one last time), when ``stop()`` returns true, or on Ctrl-C.
    Only reads: detaching changes nothing. Raises :class:`StoreError` when there is no store
    file and :class:`ExperimentNotFound` for an unknown id, before drawing anything.
    """
    if refresh_per_second <= 0:
        raise ValueError(f"refresh_per_second must be positive, got {refresh_per_second}")
    store_path = Path(store_path)
    if not store_path.is_file():
        raise StoreError(
            f"no store at {store_path} (run an experiment first, or pass the store's path)"
        )
    from remotetune.store import Store  # the view only needs the store when attaching

    store = Store.open_readonly(store_path)
    try:
        current = Snapshot.from_store(store, experiment_id)
        with Live(
            get_renderable=lambda: render(current),
            console=console,
            auto_refresh=False,  # this thread reads the store and refreshes; no second thread
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            try:
                while True:
                    live.refresh()
                    if current.experiment.status.is_finished() or (stop is not None and stop()):
                        return
                    sleep(1.0 / refresh_per_second)
                    try:
                        current = Snapshot.from_store(store, experiment_id)
                    except ExperimentNotFound:
                        raise
                    except StoreError as err:  # e.g. locked for a moment by the writer
                        logger.debug("keeping the last snapshot: %s", err)
            except KeyboardInterrupt:
                logger.debug("detached from %s", experiment_id)
            finally:
                live.stop()  # the last frame
                if not console.is_terminal:
                    console.line()  # rich ends that frame without a newline off a terminal
    finally:
        store.close()


class _Guarded:
    """Renders the latest snapshot; a failure shows one line instead of killing the thread."""

    def __init__(self, view: LiveView) -> None:
        self._view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        try:
            lines = console.render_lines(render(self._view.get_snapshot()), options, pad=False)
        except Exception as err:  # noqa: BLE001 - the display must never take the run down
            self._view.failures += 1
            self._view.last_error = err
            lines = console.render_lines(
                Text(f"live view unavailable: {err!r}", style="red"), options, pad=False
            )
        for line in lines:
            yield from line
            yield Segment.line()


class LiveView:
    """The live view during ``run``, refreshed by rich's own thread.

    ``get_snapshot`` is called from that thread: it must be cheap and thread-safe (the
    controller hands out the immutable snapshot it last built). Refreshing never calls into
    the scheduler and never blocks it; an error while drawing is shown on screen, counted in
    ``failures`` and logged once the view closes.

    It can be closed and entered again (e.g. around a prompt after Ctrl-C); closing twice
    is harmless.
    """

    def __init__(
        self,
        get_snapshot: Callable[[], Snapshot],
        *,
        console: Console,
        refresh_per_second: float = 4.0,
    ) -> None:
        self.get_snapshot = get_snapshot
        self.failures = 0
        self.last_error: Exception | None = None
        self._live = Live(
            get_renderable=self.renderable,
            console=console,
            refresh_per_second=refresh_per_second,
            auto_refresh=True,
        )

    def renderable(self) -> RenderableType:
        return _Guarded(self)

    def refresh(self) -> None:
        """Draw now rather than at the next tick (e.g. right after a trial ends)."""
        self._live.refresh()

    def __enter__(self) -> LiveView:
        self._live.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.stop()  # draws one last frame
        if not self._live.console.is_terminal:
            self._live.console.line()  # rich ends its last frame without a newline off a terminal
        if self.failures:
            logger.warning(
                "the live view failed to draw %d time(s); last error: %r",
                self.failures,
                self.last_error,
            )
            self.failures = 0
