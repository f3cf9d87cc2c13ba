"""The control socket: how the command line reaches an engine that holds a DuckDB file.

DuckDB lets one process open a database file, and while it does no other process can
open it at all. So while an engine holds a file, it serves the command line over a Unix
socket beside it (``<file>.sock``), and ``flowgen ls``, ``show``, ``sql``, ``signal``,
``cancel``, ``update``, ``export``, ``schedules``, ``schedule pause|unpause|trigger|delete``,
``reset``, ``retry`` and ``prune`` go through the engine instead of taking the file's lock
(``ls`` and ``show`` also ask it which activity attempts it holds back, ``waiting``).

Rules
=====

* **Only the file's owner can connect, from the first instant.** The socket is bound inside
  a fresh private directory (mode 0700) beside the file, made 0600, and only then renamed
  into place: no moment exists where another user could connect. A socket left behind by
  a killed engine is replaced (the engine holds the file's lock, so no other engine can be
  serving it), and the socket is removed when the engine closes, if it is still ours.
* **One request per connection**: one JSON object on one line, answered by one JSON line,
  ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"type", "message"}}``.
* **A client cannot hang the engine.** A request line is at most `MAX_REQUEST` bytes and
  must arrive within `READ_TIMEOUT` seconds; at most `MAX_CLIENTS` requests run at once
  (one more is answered "busy"). Each request runs on a thread of its own, never on the
  engine's threads, and only through the engine's public API and its store's reads.
* **A query its client no longer waits for is interrupted** (`flowgen._runtime.client_watch`).
* **The server never dies silently.** A failure of one request is answered to its client
  and logged; a failure of the accept loop itself is logged, and the loop carries on.
* Values cross as JSON: runs as their fields (timestamps as ISO text), events as
  `event_to_dict`, SQL cells tagged with their type (`encode_cell`, `decode_cell`) so the
  command line prints them as it prints a query it ran itself.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import tempfile
import threading
import time as time_module
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from flowgen._runtime.client_watch import interrupt_when_gone, serving
from flowgen._stores.codec import encode, event_from_dict, event_to_dict, to_datetime
from flowgen._stores.duckdb_open import HeldByAnotherProcess
from flowgen._stores.duckdb_read_only import read_query
from flowgen._stores.locations import is_postgres_url, open_store
from flowgen._stores.protocol import (
    FleetOptions,
    ScheduleRecord,
    Store,
    WorkflowRecord,
)
from flowgen._vocabulary.errors import (
    ErrorInfo,
    FlowgenError,
    StoreLockedError,
    UnknownWorkflow,
    WorkflowClosed,
)
from flowgen._vocabulary.events import Event, JsonValue, WorkflowStarted

if TYPE_CHECKING:
    from flowgen._runtime.engine import Engine
    from flowgen._runtime.handle import WorkflowHandle
    from flowgen._runtime.retention import PruneResult

__all__ = [
    "MAX_CLIENTS",
    "MAX_REQUEST",
    "READ_TIMEOUT",
    "ControlError",
    "ControlServer",
    "decode_cell",
    "encode_cell",
    "history_from_json",
    "open_waiting",
    "prune_reply",
    "relaunch_reply",
    "serves",
    "record_from_json",
    "record_to_json",
    "request",
    "schedule_from_json",
    "schedule_to_json",
    "socket_path",
]

log = logging.getLogger("flowgen")

MAX_REQUEST: Final = 64 * 1024
"""The longest request line the server reads, in bytes."""
READ_TIMEOUT: Final = 5.0
"""Seconds a client has to send its request line."""
MAX_CLIENTS: Final = 8
"""Requests served at once; one more is answered "busy"."""
_REPLY_TIMEOUT: Final = (
    600.0  # a client's hang guard: an export of a big file takes time
)
_SUN_PATH_MAX: Final = (
    100  # sockaddr_un holds ~107 bytes; longer paths go through /proc
)


class ControlError(FlowgenError):
    """The engine behind the socket refused a request (its error type and message)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


def serves(path: str) -> bool:
    """Whether an engine on store location *path* serves a control socket (a DuckDB file)."""
    return path != ":memory:" and not is_postgres_url(path)


def socket_path(db_path: str) -> str:
    """Where the engine holding *db_path* serves the command line."""
    return os.path.abspath(db_path) + ".sock"


@contextlib.contextmanager
def _addressable(path: str) -> Iterator[str]:
    """*path*, or an equivalent short enough for a socket address (via /proc/self/fd)."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield path
        return
    directory = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{os.path.basename(path)}"
    finally:
        os.close(directory)


# -- opening a file the command line may hold for a moment ---------------------------------------

_RETRY_EVERY: Final = 0.1


def open_waiting(
    path: str,
    *,
    duckdb_threads: int | None,
    lock_timeout: float,
    fleet: FleetOptions | None = None,
) -> Store:
    """`open_store`, waiting up to *lock_timeout* seconds while another process has the file.

    A ``flowgen`` command that found no engine opens the file itself for a moment (a slow
    ``sql`` or ``export``); an application starting meanwhile waits for it rather than
    failing.

    Raises:
        StoreLockedError: Another process still had the file after *lock_timeout* seconds
            (two lines: who holds it and for how long it waited, then what to do).
    """
    deadline = time_module.monotonic() + lock_timeout
    told = False
    while True:
        try:
            return open_store(path, duckdb_threads=duckdb_threads, fleet=fleet)
        except HeldByAnotherProcess as exc:
            if not told and lock_timeout > 0:
                told = True
                log.warning(
                    "waiting up to %g s for %s: %s",
                    lock_timeout,
                    path,
                    str(exc).partition("\n")[0],
                )
            if time_module.monotonic() >= deadline:
                first, _, rest = str(exc).partition("\n")
                waited = f" (waited {lock_timeout:g} s for it: lock_timeout)"
                raise StoreLockedError(
                    f"{first.rstrip('.')}{waited}.\n{rest}"
                ) from None
        threading.Event().wait(_RETRY_EVERY)


# -- values over JSON ---------------------------------------------------------------------------


def record_to_json(record: WorkflowRecord) -> dict[str, JsonValue]:
    """A run's row as a JSON object (`record_from_json` rebuilds it)."""
    data: dict[str, Any] = attrs.asdict(record, recurse=False)
    data["started_at"] = record.started_at.isoformat()
    data["closed_at"] = record.closed_at.isoformat() if record.closed_at else None
    data["error"] = attrs.asdict(record.error) if record.error is not None else None
    data["status"] = str(record.status)
    return data


def record_from_json(data: dict[str, Any]) -> WorkflowRecord:
    """The `WorkflowRecord` of a `record_to_json` object."""
    fields = dict(data)
    fields["started_at"] = to_datetime(data["started_at"])
    if data["closed_at"] is not None:
        fields["closed_at"] = to_datetime(data["closed_at"])
    if data["error"] is not None:
        fields["error"] = ErrorInfo(**data["error"])
    return WorkflowRecord(**fields)


_SCHEDULE_TIMES: Final = tuple(
    field.name for field in attrs.fields(ScheduleRecord) if field.name.endswith("_at")
)


def schedule_to_json(schedule: ScheduleRecord) -> dict[str, JsonValue]:
    """A schedule's row as a JSON object (`schedule_from_json` rebuilds it)."""
    data: dict[str, Any] = attrs.asdict(schedule, recurse=False)
    for name in _SCHEDULE_TIMES:
        data[name] = None if data[name] is None else data[name].isoformat()
    return data


def schedule_from_json(data: dict[str, Any]) -> ScheduleRecord:
    """The `ScheduleRecord` of a `schedule_to_json` object."""
    fields = dict(data)
    for name in _SCHEDULE_TIMES:
        if fields[name] is not None:
            fields[name] = to_datetime(fields[name])
    return ScheduleRecord(**fields)


_CELL_TYPES: Final[dict[str, Callable[[Any], object]]] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
}


def encode_cell(value: object) -> JsonValue:
    """A SQL result cell as JSON; anything but a plain JSON scalar is tagged with its type."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, datetime):
        return {"$t": "datetime", "v": value.isoformat()}
    if isinstance(value, (date, time)):
        return {"$t": type(value).__name__, "v": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$t": "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {"$t": "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$t": "uuid", "v": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$t": "bytes", "v": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return {"$t": "list", "v": [encode_cell(v) for v in value]}
    if isinstance(value, dict):
        return {
            "$t": "dict",
            "v": [[encode_cell(k), encode_cell(v)] for k, v in value.items()],
        }
    return {"$t": "str", "v": str(value)}


def decode_cell(cell: Any) -> object:
    """The value `encode_cell` encoded (an unknown type comes back as its text)."""
    if not isinstance(cell, dict):
        return cell
    kind, value = cell["$t"], cell["v"]
    if kind == "list":
        return [decode_cell(v) for v in value]
    if kind == "dict":
        return {decode_cell(k): decode_cell(v) for k, v in value}
    if kind in _CELL_TYPES:
        return _CELL_TYPES[kind](value)
    return str(value)


# -- the client -----------------------------------------------------------------------------------


def request(db_path: str, op: str, **fields: JsonValue) -> JsonValue | None:
    """Send one request to the engine serving *db_path*.

    Returns:
        ``None`` when no engine answers (no socket, or a stale one left by a killed
        engine): the caller opens the file itself. Otherwise the reply's result.

    Raises:
        ControlError: The engine answered with an error.
        OSError: The engine went away in the middle of the request.
    """
    path = socket_path(db_path)
    if not os.path.exists(path):
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            with _addressable(path) as address:
                client.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # stale: nothing listens there any more
        client.settimeout(_REPLY_TIMEOUT)
        client.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        with client.makefile("rb") as reply_file:
            line = reply_file.readline()
    finally:
        client.close()
    if not line:
        raise ConnectionResetError(
            f"the engine serving {db_path} closed the connection"
        )
    reply = json.loads(line)
    if not reply["ok"]:
        raise ControlError(reply["error"]["type"], reply["error"]["message"])
    result: JsonValue = reply["result"]
    return result


# -- the server -----------------------------------------------------------------------------------


class ControlServer:
    """Serves the command line for one engine, on a thread, until `close`."""

    def __init__(self, engine: Engine, db_path: str) -> None:
        self._engine = engine
        self.path = socket_path(db_path)
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._stopped = threading.Event()
        self._listener, self._identity = self._bind()
        self._thread = threading.Thread(
            target=self._accept_loop, name="flowgen-control", daemon=True
        )
        self._thread.start()

    @classmethod
    def start(cls, engine: Engine, db_path: str) -> ControlServer | None:
        """A server for *engine*, or ``None`` (logged) where no socket can be made.

        The application matters more than its command line: a directory that cannot
        hold a socket (some network file systems) costs the CLI, not the engine.
        """
        try:
            return cls(engine, db_path)
        except OSError as exc:
            log.warning(
                "no control socket for %s (%s): `flowgen` commands cannot reach this "
                "engine while it runs",
                db_path,
                exc,
            )
            return None

    def _bind(self) -> tuple[socket.socket, tuple[int, int]]:
        directory = tempfile.mkdtemp(
            prefix=".flowgen-sock-", dir=os.path.dirname(self.path)
        )
        staged = os.path.join(directory, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _addressable(staged) as address:
                listener.bind(address)
            os.chmod(staged, 0o600)
            listener.listen(MAX_CLIENTS)
            identity = os.stat(staged)
            # Replaces a stale socket of a killed engine: this engine holds the file's
            # lock, so no other engine serves it.
            os.replace(staged, self.path)
        except BaseException:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(staged)
            raise
        finally:
            os.rmdir(directory)
        return listener, (identity.st_dev, identity.st_ino)

    def close(self) -> None:
        """Stop serving and remove the socket (if it is still ours). Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            stat = os.stat(self.path)
            if (stat.st_dev, stat.st_ino) == self._identity:
                os.unlink(self.path)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._stopped.is_set():
                    return
                log.exception(
                    "control socket %s: accept failed; still serving", self.path
                )
                self._stopped.wait(0.1)  # no busy loop if accept keeps failing
                continue
            if not self._slots.acquire(blocking=False):
                self._answer_and_close(
                    conn, _error("Busy", "too many requests at once")
                )
                continue
            try:
                threading.Thread(
                    target=self._serve_one,
                    args=(conn,),
                    name="flowgen-control-request",
                    daemon=True,
                ).start()
            except (
                Exception
            ):  # e.g. no thread to be had: this request fails, not the loop
                log.exception("control socket %s: cannot serve a request", self.path)
                self._slots.release()
                conn.close()

    def _serve_one(self, conn: socket.socket) -> None:
        serving.conn = conn  # a query this request runs stops if the client leaves
        try:
            reply = self._reply_to(conn)
            self._answer_and_close(conn, reply)
        except Exception:  # a request never takes the server down
            log.exception("control socket %s: a request failed", self.path)
            conn.close()
        finally:
            self._slots.release()

    def _reply_to(self, conn: socket.socket) -> dict[str, Any]:
        conn.settimeout(READ_TIMEOUT)
        try:
            line = _read_line(conn)
        except (TimeoutError, OSError, ValueError) as exc:
            return _error("BadRequest", f"no request line: {exc}")
        try:
            message = json.loads(line)
            op = message.pop("op")
            handler = _HANDLERS[op]
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error("BadRequest", f"not a request: {line[:200]!r}")
        try:
            return {"ok": True, "result": handler(self._engine, **message)}
        except Exception as exc:  # answered to the client, as data
            if not isinstance(exc, (FlowgenError, ValueError, TypeError, LookupError)):
                log.warning(
                    "control socket %s: %s failed", self.path, op, exc_info=True
                )
            return _error(type(exc).__name__, str(exc))

    @staticmethod
    def _answer_and_close(conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.settimeout(_REPLY_TIMEOUT)
            conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
        except OSError:
            pass  # the client went away; nothing to tell it
        finally:
            conn.close()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"a request is at most {MAX_REQUEST} bytes")
    return data


def _error(type_name: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type_name, "message": message}}


# -- the requests ---------------------------------------------------------------------------------


def _ls(
    engine: Engine, status: str | None = None, name: str | None = None
) -> JsonValue:
    runs = engine.list_runs(status=status, name=name, limit=None)
    return [record_to_json(r) for r in runs]


def _show(engine: Engine, id: str, run: str | None = None) -> JsonValue:  # noqa: A002
    record = engine.store.get_run(id, run)
    if record is None:
        return {"record": None}
    history = engine.store.load_history(record.workflow_id, record.run_id)
    cursor = engine.store.cursor()  # type: ignore[attr-defined]
    try:
        chain = [
            run_id
            for (run_id,) in cursor.execute(
                "select run_id from workflows where workflow_id = ? order by started_at",
                [record.workflow_id],
            ).fetchall()
        ]
    finally:
        cursor.close()
    return {
        "record": record_to_json(record),
        "history": [event_to_dict(e) for e in history],
        "run_ids": chain,
    }


def _sql(engine: Engine, query: str) -> JsonValue:
    cursor = engine.store.cursor()  # type: ignore[attr-defined]
    try:
        with interrupt_when_gone(cursor):
            columns, types, rows = read_query(cursor, query)
    finally:
        cursor.close()
    return {
        "columns": columns,  # type: ignore[dict-item]
        "types": types,  # type: ignore[dict-item]
        "rows": [[encode_cell(v) for v in row] for row in rows],
    }


def _deliver(engine: Engine, id: str, send: Callable[[], None]) -> JsonValue:  # noqa: A002
    record = engine.store.get_run(id)
    if record is None:
        raise UnknownWorkflow(f"no workflow with id {id!r}")
    if record.is_closed:
        raise WorkflowClosed(
            f"workflow {id!r} has finished ({record.status}); it takes no more "
            f"signals or cancels"
        )
    send()
    # Recorded: from here on the answer says so, even if the engine closes meanwhile.
    try:
        handle = engine.get(id)
        status: str | None = str(handle.status())
        stuck = handle.stuck()
    except Exception:  # noqa: BLE001  # the engine is closing; the request was recorded
        status, stuck = None, None
    return {
        "name": record.name,
        "status": status,
        "stuck": None if stuck is None else f"{type(stuck).__name__}: {stuck}",
    }


def _signal(engine: Engine, id: str, name: str, payload: JsonValue = None) -> JsonValue:  # noqa: A002
    return _deliver(engine, id, lambda: engine.signal(id, name, payload))


def _cancel(engine: Engine, id: str, reason: str = "") -> JsonValue:  # noqa: A002
    return _deliver(engine, id, lambda: engine.cancel(id, reason))


def _update(
    engine: Engine,
    id: str,  # noqa: A002
    name: str,
    arguments: list[JsonValue],
    update_id: str | None = None,
    timeout: float | None = None,
) -> JsonValue:
    # Waits for the handler on this request's own thread, as a caller of the API would.
    value = engine.update(id, name, *arguments, update_id=update_id, timeout=timeout)
    return {"result": encode(value, f"the result of update {name!r}")}


def _export(engine: Engine, dir: str) -> JsonValue:  # noqa: A002
    written: list[str] = engine.store.export_parquet(Path(dir))  # type: ignore[attr-defined]
    return written  # type: ignore[return-value]


def relaunch_reply(engine: Engine, handle: WorkflowHandle) -> dict[str, JsonValue]:
    """What ``reset`` and ``retry`` report of the new run *handle*."""
    started = engine.store.load_history(handle.workflow_id, handle.run_id)[0]
    assert isinstance(started, WorkflowStarted)
    stuck = handle.stuck()
    return {
        "run_id": handle.run_id,
        "name": started.name,
        "origin_run_id": started.origin_run_id,
        "origin_event": started.origin_event,
        "status": str(handle.status()),
        "stuck": None if stuck is None else f"{type(stuck).__name__}: {stuck}",
    }


def prune_reply(result: PruneResult) -> dict[str, JsonValue]:
    """What ``prune`` reports of *result*."""
    return {
        "runs": result.runs,
        "events": result.events,
        "cutoff": result.cutoff.strftime("%Y-%m-%d %H:%M:%S"),
        "files": list(result.files),
    }


def _reset(
    engine: Engine,
    id: str,  # noqa: A002
    event: int,
    run: str | None = None,
    terminate: bool = False,
) -> JsonValue:
    handle = engine.reset(id, event_id=event, run_id=run, terminate=terminate)
    return relaunch_reply(engine, handle)


def _retry(
    engine: Engine,
    id: str,  # noqa: A002
    run: str | None = None,
    terminate: bool = False,
) -> JsonValue:
    return relaunch_reply(engine, engine.retry(id, run_id=run, terminate=terminate))


def _prune(engine: Engine, older_than: str, export_to: str | None = None) -> JsonValue:
    return prune_reply(engine.prune(older_than, export_to=export_to))


def _schedules(engine: Engine) -> JsonValue:
    return [schedule_to_json(s) for s in engine.schedules()]


def _schedule_change(engine: Engine, action: str, id: str, note: str = "") -> JsonValue:  # noqa: A002
    changed = engine._schedules.change(id, action, note)
    if changed is None:
        # A delete. Never answer null: to the command line, no answer means no engine
        # serves the file (it would then open the file itself, and find it held).
        return {"deleted": id}
    return schedule_to_json(changed)


def _waiting(engine: Engine) -> JsonValue:
    return [
        {
            "workflow_id": w.workflow_id,
            "run_id": w.run_id,
            "seq": w.seq,
            "activity": w.activity,
            "attempt": w.attempt,
            "waiting_for": w.waiting_for,
            "on": w.on,
            "detail": w.detail,
            "since": w.since.isoformat(),
        }
        for w in engine.waiting_activities()
    ]


_HANDLERS: Final[dict[str, Callable[..., JsonValue]]] = {
    "schedules": _schedules,
    "schedule": _schedule_change,
    "ls": _ls,
    "waiting": _waiting,
    "show": _show,
    "sql": _sql,
    "signal": _signal,
    "cancel": _cancel,
    "update": _update,
    "export": _export,
    "reset": _reset,
    "retry": _retry,
    "prune": _prune,
}


def history_from_json(items: list[dict[str, JsonValue]]) -> list[Event]:
    """The events of a ``show`` reply."""
    return [event_from_dict(item) for item in items]
