"""A fast fixed-layout table for the live view's hosts and trials sections.

``rich.table.Table`` measures every cell through the full renderable protocol, which costs
several milliseconds per row; the view redraws a few times a second, so its tables are plain
one-line cells laid out here: natural widths, one flexible column that takes what is left,
truncation with an ellipsis, one line per row (never wrapped).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

ELLIPSIS = "…"


@dataclass(frozen=True)
class Column:
    header: str
    justify: Literal["left", "right"] = "left"
    max_width: int | None = None  # cells are cut to this with an ellipsis
    flexible: bool = False  # takes the width the others leave (the first such column)
    min_width: int = 1


@dataclass(frozen=True)
class Cell:
    text: str
    style: str = ""


def fit(text: str, width: int, justify: Literal["left", "right"] = "left") -> str:
    """``text`` padded or cut (ending in an ellipsis) to exactly ``width`` cells."""
    if width <= 0:
        return ""
    size = cell_len(text)
    if size > width:
        return set_cell_size(text, width - 1) + ELLIPSIS if width > 1 else ELLIPSIS
    pad = " " * (width - size)
    return pad + text if justify == "right" else text + pad


class Grid:
    """A titled table of one-line cells that always fits the width it is given."""

    def __init__(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Cell]],
        *,
        title: str | None = None,
        gap: int = 2,
    ) -> None:
        self.columns = tuple(columns)
        self.rows = rows
        self.title = title
        self.gap = gap

    def widths(self, available: int) -> list[int]:
        """Column widths summing (with the gaps) to at most ``available``."""
        widths = []
        for i, col in enumerate(self.columns):
            natural = max([cell_len(col.header), *(cell_len(row[i].text) for row in self.rows)])
            if col.max_width is not None:
                natural = min(natural, col.max_width)
            widths.append(max(natural, col.min_width if col.flexible else 0))
        gaps = self.gap * (len(widths) - 1)
        flex = next((i for i, c in enumerate(self.columns) if c.flexible), None)
        if flex is not None:  # the flexible column takes what is left, at least its minimum
            others = sum(widths) - widths[flex]
            widths[flex] = max(self.columns[flex].min_width, available - gaps - others)
        excess = sum(widths) + gaps - available
        while excess > 0 and max(widths) > 1:  # still too wide: narrow the widest column
            widest = widths.index(max(widths))
            cut = min(excess, widths[widest] - max(1, widths[widest] // 2))
            cut = max(cut, 1)
            widths[widest] -= cut
            excess -= cut
        return widths

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        widths = self.widths(options.max_width)
        total = sum(widths) + self.gap * (len(widths) - 1)
        gap = Segment(" " * self.gap)
        bold = Style(bold=True)
        if self.title:
            yield Segment(fit(self.title, total).rstrip(), bold)
            yield Segment.line()
        for i, (col, width) in enumerate(zip(self.columns, widths, strict=True)):
            if i:
                yield gap
            yield Segment(fit(col.header, width, col.justify), bold)
        yield Segment.line()
        yield Segment("─" * total)
        yield Segment.line()
        for row in self.rows:
            for i, (col, width, cell) in enumerate(zip(self.columns, widths, row, strict=True)):
                if i:
                    yield gap
                style = Style.parse(cell.style) if cell.style else None
                yield Segment(fit(cell.text, width, col.justify), style)
            yield Segment.line()
