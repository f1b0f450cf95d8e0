"""Compose the sections into one renderable that fits the console it is drawn on."""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

from remotetune.view._panels import best_panel, events_panel, header, hosts_panel, waiting_line
from remotetune.view._snapshot import Snapshot
from remotetune.view._trials import TABLE_CHROME, trials_table

DEFAULT_MAX_TRIALS = 25  # rows shown when the console is not a terminal and no limit is given
MIN_TRIAL_ROWS = 3


class ExperimentView:
    """One frame of the live view: header, hosts, trials, best trial, events.

    On a terminal the trials table gets the rows the other sections leave free; elsewhere it
    shows ``max_trials`` rows (``DEFAULT_MAX_TRIALS`` when not given).
    """

    def __init__(
        self, snapshot: Snapshot, *, width: int | None = None, max_trials: int | None = None
    ) -> None:
        self.snapshot = snapshot
        self.width = width
        self.max_trials = max_trials

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        snap = self.snapshot
        if self.width is not None:
            options = options.update_width(min(self.width, options.max_width))
        top = console.render_lines(header(snap), options, pad=False)
        top += console.render_lines(hosts_panel(snap), options, pad=False)
        bottom = console.render_lines(best_panel(snap), options, pad=False)
        bottom.append([])
        bottom += console.render_lines(events_panel(snap), options, pad=False)
        waiting = waiting_line(snap)
        if waiting is not None:
            bottom += console.render_lines(waiting, options, pad=False)
        limit = self.max_trials
        if limit is None:
            if options.is_terminal:
                height = options.height or options.size.height
                # one blank line before and after the trials table, one for "... and N more"
                free = height - len(top) - len(bottom) - TABLE_CHROME - 3
                limit = max(MIN_TRIAL_ROWS, free)
            else:
                limit = DEFAULT_MAX_TRIALS
        middle = console.render_lines(trials_table(snap, limit), options, pad=False)
        blank: list[list[Segment]] = [[]]
        for line in [*top, *blank, *middle, *blank, *bottom]:
            yield from line
            yield Segment.line()


def render(
    snapshot: Snapshot, *, width: int | None = None, max_trials: int | None = None
) -> RenderableType:
    """The whole view of ``snapshot`` as one rich renderable.

    ``width`` caps the width (default: the console's); ``max_trials`` caps the trials table
    (default: what fits the terminal's height, or ``DEFAULT_MAX_TRIALS`` off a terminal).
    """
    return ExperimentView(snapshot, width=width, max_trials=max_trials)
