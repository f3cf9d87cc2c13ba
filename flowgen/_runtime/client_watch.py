"""A query nobody waits for any more is interrupted: the control socket's client watch.

Rules
=====

* A ``flowgen sql`` request runs its query inside the application (`flowgen._runtime.control`).
  When its client goes away before the answer (Ctrl-C, a killed terminal, the client's own
  timeout), the query is interrupted: it no longer burns the application's CPU for as long
  as it would have taken (hours, for a careless join), nor holds one of the socket's few
  request slots, after which every command would be answered "busy".
* A client sends its one request line and then only waits, so its connection turning
  readable means it closed (a read returns nothing). Bytes it sends after its request are
  not a request: the watch then stops, and the query runs to its end.
* The watch is a thread per watched query, polling the connection a few times a second; it
  stops as the query ends, and never touches the connection's data. Once the client is
  gone it interrupts again at each poll until the query ends: an interrupt that comes
  before DuckDB began the query is lost.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from typing import Final, Protocol

__all__ = ["interrupt_when_gone", "serving"]

_POLL: Final = 0.2
"""Seconds between two looks at the client's connection."""

serving = threading.local()
"""The connection of the request this thread serves (``serving.conn``), if any."""


class Interruptible(Protocol):
    """What a watched query runs on (a DuckDB cursor)."""

    def interrupt(self) -> None:
        """Stop the query running on it, from another thread."""


@contextlib.contextmanager
def interrupt_when_gone(cursor: Interruptible) -> Iterator[None]:
    """Interrupt *cursor*'s query if the client this thread serves closes its connection.

    Outside a request of the control socket (no ``serving.conn``) it watches nothing.
    """
    conn: socket.socket | None = getattr(serving, "conn", None)
    if conn is None:
        yield
        return
    done = threading.Event()
    watch = threading.Thread(
        target=_watch,
        args=(conn, cursor, done),
        name="flowgen-client-watch",
        daemon=True,
    )
    watch.start()
    try:
        yield
    finally:
        done.set()


def _watch(conn: socket.socket, cursor: Interruptible, done: threading.Event) -> None:
    while not done.is_set():
        try:
            readable, _, _ = select.select([conn], [], [], _POLL)
            if not readable:
                continue
            gone = conn.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):  # closed under us: the answer was sent
            return
        if not gone:
            return
        # Again until the query ends: an interrupt before DuckDB began it is lost.
        while not done.is_set():
            with contextlib.suppress(Exception):  # the query may end meanwhile
                cursor.interrupt()
            done.wait(_POLL)
        return
