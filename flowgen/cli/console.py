"""Where the command line writes: a terminal gets colour and progress, a pipe plain text.

Rules, one place for all commands:

* Results go to stdout. When stdout is a terminal and `rich` is installed (the ``cli``
  extra), tables are drawn by rich with the statuses in colour; otherwise they are the
  plain aligned text of `flowgen.cli.table`, the same columns and values, which is what a
  script, ``grep`` or a file receives. rich's own switches apply: ``NO_COLOR`` turns colour
  off, ``FORCE_COLOR`` (or ``TTY_COMPATIBLE=1``) turns the terminal look on for a pipe.
* Progress goes to stderr, and only when stderr is a terminal: a rich progress bar, or
  without rich one line rewritten in place. Piped, a command prints no progress at all, so
  its output is the same however long it took.
* Errors and warnings are one line on stderr starting ``flowgen:`` (see `error`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TextIO

from flowgen.cli.table import format_cell, format_table

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Output", "Progress", "error"]

STATUS_STYLES = {
    "running": "cyan",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "terminated": "magenta",
    "continued_as_new": "blue",
    "ok": "green",
    "DIVERGED": "bold red",
    "CORRUPT": "bold red",
    "ERROR": "bold red",
}
"""The colour of a cell whose whole text is one of these words (statuses, verdicts)."""

_STYLED_COLUMNS = frozenset({"status", "replay", "kind"})

_COLUMN_GAP = 3
"""Characters between two columns of a rich table (its padding and divider)."""

_RICH_ROWS_MAX = 1000
"""Longer tables are printed as plain text on a terminal too (rich measures every cell)."""

_PLAIN_REDRAW_EVERY = 0.2
"""Seconds between two redraws of the plain progress line (a redraw per item is slow)."""


MESSAGE_CHARACTERS = 1_000
"""The longest message `error` prints: one that quotes a huge argument is cut in the middle."""


def error(message: str) -> None:
    """Report *message* on stderr as ``flowgen: message``, at most `MESSAGE_CHARACTERS`."""
    if len(message) > MESSAGE_CHARACTERS:
        cut = len(message) - MESSAGE_CHARACTERS
        message = (
            f"{message[:700]} ... ({cut} characters left out) ... {message[-300:]}"
        )
    print(f"flowgen: {message}", file=sys.stderr)


def _rich_console(stream: TextIO) -> Console | None:
    """A rich console on *stream* if rich is installed and *stream* is a terminal."""
    try:
        from rich.console import Console
    except ImportError:  # the `cli` extra is not installed: plain text
        return None
    console = Console(file=stream, highlight=False, soft_wrap=False)
    return console if console.is_terminal else None


class Progress(Protocol):
    """What `Output.progress` yields: call it as items get done."""

    def __call__(self, n: int = 1, *, total: int | None = None) -> None:
        """Advance by *n* items; *total* corrects the count once it is known."""


class Output:
    """The command line's stdout and stderr, styled for a terminal or plain for a pipe."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self._console = _rich_console(self.out)
        self._err_console = _rich_console(self.err)
        self._err_is_terminal = self._err_console is not None or _isatty(self.err)

    def line(
        self, text: str = "", *, style: str | None = None, flush: bool = False
    ) -> None:
        """Print one line of *text* (in *style* on a terminal: ``"bold"``, ``"red"``).

        *flush* for a line another process waits for (``flowgen worker``'s first).
        """
        if self._console is not None:
            # soft_wrap: long lines (a divergence message) wrap in the terminal, so a copy
            # and paste gets them back whole.
            self._console.print(
                text, style=style, markup=False, highlight=False, soft_wrap=True
            )
        else:
            self.out.write(text + "\n")
        if flush:
            self.out.flush()

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[object]],
        *,
        max_width: int | None = None,
    ) -> None:
        """Rows under a header, aligned; statuses in colour on a terminal."""
        texts = [[format_cell(v, width=max_width) for v in row] for row in rows]
        widths = [
            max([len(name), *(len(row[i]) for row in texts)])
            for i, name in enumerate(columns)
        ]
        # Too wide for the terminal even with the last column cut short (a wide SQL
        # result): plain text, which the terminal wraps, rather than columns cropped away.
        # Too long (`show --all` of a big history): plain text too, 7x faster to print.
        too_wide = (
            self._console is not None
            and sum(widths[:-1]) + _COLUMN_GAP * len(widths) + min(widths[-1], 12)
            > self._console.width
        )
        if self._console is None or too_wide or len(rows) > _RICH_ROWS_MAX:
            self.out.write(format_table(columns, rows, max_width=max_width) + "\n")
            return
        from rich import box
        from rich.table import Table

        table = Table(
            box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False
        )
        for i, name in enumerate(columns):
            numeric = bool(rows) and all(
                isinstance(r[i], int | float) and not isinstance(r[i], bool)
                for r in rows
                if r[i] is not None
            )
            # One row per line, as in the plain table: when the terminal is too narrow,
            # the last column's cells are cut with "…" (the others keep their width).
            last = i == len(columns) - 1
            table.add_column(
                name,
                justify="right" if numeric else "left",
                no_wrap=True,
                overflow="ellipsis",
                min_width=None if last else widths[i],
            )
        for row_texts in texts:
            cells = []
            for name, text in zip(columns, row_texts, strict=True):
                style = STATUS_STYLES.get(text) if name in _STYLED_COLUMNS else None
                cells.append(f"[{style}]{_escape(text)}[/]" if style else _escape(text))
            table.add_row(*cells)
        self._console.print(table)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``key  value`` lines, keys aligned (the head of ``flowgen show``)."""
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            if self._console is not None:
                style = STATUS_STYLES.get(value) if key == "status" else None
                self._console.print(
                    f"[bold]{_escape(key.ljust(width))}[/]  "
                    + (f"[{style}]{_escape(value)}[/]" if style else _escape(value)),
                    highlight=False,
                )
            else:
                self.out.write(f"{key.ljust(width)}  {value}\n")

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Progress]:
        """Show progress on stderr while the block runs, if stderr is a terminal.

        Args:
            description: What is being done (``"replaying"``).
            total: How many items there are, or ``None`` if unknown.

        Yields:
            A function to call with the number of items just done.
        """
        if not self._err_is_terminal:
            yield _ignore
            return
        if self._err_console is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress as RichProgress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            with RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._err_console,
                transient=True,  # gone when done: what remains is the result
            ) as bar:
                task = bar.add_task(description, total=total)

                def advance(n: int = 1, *, total: int | None = None) -> None:
                    if total is not None:
                        bar.update(task, total=total)
                    bar.advance(task, n)

                yield advance
            return
        with _PlainProgress(self.err, description, total) as advance:
            yield advance


def _ignore(n: int = 1, *, total: int | None = None) -> None:
    """Progress nobody sees (stderr is not a terminal)."""


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class _PlainProgress:
    """``description: 1,234/3,000`` rewritten in place on a terminal without rich."""

    def __init__(self, stream: TextIO, description: str, total: int | None) -> None:
        self._stream = stream
        self._description = description
        self._total = total
        self._done = 0
        self._drawn = 0.0

    def __enter__(self) -> Progress:
        self._draw()
        return self._advance

    def __exit__(self, *exc: object) -> None:
        self._stream.write("\r\x1b[K")  # clear the line: what remains is the result
        self._stream.flush()

    def _advance(self, n: int = 1, *, total: int | None = None) -> None:
        self._done += n
        if total is not None:
            self._total = total
        if time.monotonic() - self._drawn >= _PLAIN_REDRAW_EVERY:
            self._draw()

    def _draw(self) -> None:
        of = f"/{self._total:,}" if self._total is not None else ""
        self._stream.write(f"\r{self._description}: {self._done:,}{of}")
        self._stream.flush()
        self._drawn = time.monotonic()
