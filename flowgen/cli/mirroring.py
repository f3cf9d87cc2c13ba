"""``flowgen mirror``: keep a DuckDB file that follows a PostgreSQL database, for BI tools.

The file is an analytics copy (`flowgen._stores.duckdb_mirror`): the DuckDB schema's tables,
views and ``activity_calls``, filled from PostgreSQL in bulk and then incrementally. One
run catches up and exits; ``--follow`` then keeps it up to date until Ctrl-C or SIGTERM.
Either signal stops it cleanly: the chunk being copied is finished (or not started), the
file is checkpointed and closed, and the next run resumes where the file says it got to.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from flowgen._stores.url import display_url, is_postgres_url
from flowgen.cli.common import EXIT_OK, CommandError, db_path
from flowgen.cli.console import Output

if TYPE_CHECKING:
    from flowgen._stores.duckdb_mirror import AnalyticsCopy

__all__ = ["MIRROR_HELP", "cmd_mirror"]

MIRROR_HELP = """\
Copy a flowgen PostgreSQL database (--db postgresql://...) into the DuckDB file --to, with
the tables, views and the per-call table of an embedded flowgen file, so that any DuckDB,
a notebook or a BI tool can query it without touching PostgreSQL:

  flowgen --db postgresql://app@db/orders mirror --to analytics.duckdb
  duckdb analytics.duckdb -c "select name, quantile_cont(duration_s, 0.95) from activity_calls group by name"

The first run copies everything, in chunks (progress on stderr); later runs copy only what
changed since (new events, runs whose status changed). --follow keeps copying every
--interval seconds until Ctrl-C or SIGTERM, which stop it cleanly. An interrupted copy
resumes where it got to. The file must be new or a copy of this same database; while this
command runs, it holds the file (DuckDB allows one writer): BI tools read it between runs,
or read a copy of it.
"""


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (on the main thread)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # only the main thread may install handlers (main() in a test thread)
        return
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_mirror(args: argparse.Namespace) -> int:
    """``flowgen mirror --to FILE [--follow] [--interval S]``."""
    from flowgen._stores.duckdb_mirror import AnalyticsCopy

    url = db_path(args)
    if not is_postgres_url(url):
        raise CommandError(
            f"flowgen mirror copies a PostgreSQL database (--db postgresql://...), and "
            f"{url} is a DuckDB file: query it directly, or `flowgen export` a snapshot"
        )
    if args.interval <= 0:
        raise CommandError(f"--interval must be > 0 seconds, got {args.interval:g}")
    out = Output()
    with _stop_on_signals() as stop:
        copy = AnalyticsCopy(url, display_url(url), args.to)
        try:
            copied = _catch_up(copy, out, stop.is_set)
            out.line(
                f"{args.to}: {copied:,} events copied from {copy.where}"
                + (" (stopped early: run again to go on)" if stop.is_set() else ""),
                flush=True,
            )
            if args.follow and not stop.is_set():
                out.line(
                    f"following every {args.interval:g} s (Ctrl-C or SIGTERM stops)",
                    flush=True,
                )
                _follow(copy, out, stop, args.interval)
                out.line(f"stopped: {args.to} is complete up to where it got to.")
        finally:
            copy.close()
    return EXIT_OK


def _catch_up(copy: AnalyticsCopy, out: Output, stop: Callable[[], bool]) -> int:
    done = 0
    with out.progress("copying events", total=None) as advance:

        def progress(copied: int, total: int) -> None:
            nonlocal done
            advance(copied - done, total=total)
            done = copied

        return copy.refresh(progress=progress, stop=stop)


def _follow(
    copy: AnalyticsCopy, out: Output, stop: threading.Event, interval: float
) -> None:
    while not stop.wait(interval):
        started = time.monotonic()
        copied = copy.refresh(stop=stop.is_set)
        if copied:
            out.line(
                f"+{copied:,} events ({time.monotonic() - started:.2f} s)", flush=True
            )
