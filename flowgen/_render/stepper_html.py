"""The Stepper view: what a workflow asks for (its commands) and where a Stepper stands.

Pure string building on `flowgen._render.html_parts` (which owns escaping: every value that
came from a user passes through its `escape`) and the history table of the events view
(`flowgen._render.html`).

What renders what:

* `command_html` is installed as ``_repr_html_`` on every command class when this module is
  imported (``flowgen/__init__.py`` imports it): a card with the command's description and
  its arguments, retry policy, timeouts (by Temporal's names), target or change id. A
  gather or race lists its children, each with its own details.
* `stepper_html` renders a `Stepper`: its status and where the generator is suspended, the
  pending command(s) by seq (an activity's title carries its arguments, so only its
  timeouts are added, and a details table only when there is a row), else the result or
  error; the workflow's locals (``repr`` shortened, a failing ``repr`` shown as such,
  comprehension internals hidden), and the history so far.
* A yield site reads as a person wants it (`yield_site_label`): the file's name and line,
  the whole path as a tooltip; a workflow defined in a notebook shows the cell's line
  instead of the kernel's temp file.

The stepper is read through plain arguments, since the runtime sits above this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath

from flowgen._render.html import history_table
from flowgen._render.html_parts import (
    badge,
    call_args,
    details_table,
    error_html,
    escape,
    format_duration,
    json_text,
    shorten,
    table,
    wrap,
)
from flowgen._vocabulary.commands import (
    COMMAND_KINDS,
    ActivityOptions,
    CallActivity,
    ContinueAsNew,
    Gather,
    GetVersion,
    Patched,
    Race,
    RecordSideEffect,
    RegisterQuery,
    SendSignal,
    SetTags,
    StartChild,
    StartTimer,
    WaitCondition,
    WaitSignal,
    describe_command,
)
from flowgen._vocabulary.errors import ErrorInfo
from flowgen._vocabulary.events import Event

__all__ = ["command_html", "stepper_html", "yield_site_label"]

_LOCAL_CHARS = 200
"""The most characters a local variable's ``repr`` takes before it is shortened."""


def _timeout_rows(options: ActivityOptions) -> list[tuple[str, str]]:
    """An activity's timeouts, by Temporal's names, as key/value rows."""
    timeouts = (
        ("start-to-close timeout", options.timeout),
        ("heartbeat timeout", options.heartbeat_timeout),
        ("schedule-to-close timeout", options.schedule_to_close),
    )
    return [
        (key, escape(format_duration(value)))
        for key, value in timeouts
        if value is not None
    ]


def _command_details(command: object) -> list[tuple[str, str]]:
    """Key/value rows (values are HTML) describing *command*'s arguments."""
    rows: list[tuple[str, str]] = []
    match command:
        case CallActivity(args=args, kwargs=kwargs, options=options):
            rows.append(
                ("arguments", f"<code>({escape(call_args(args, kwargs))})</code>")
            )
            if options.retry is not None:
                rows.append(("retry", f"<code>{escape(options.retry)}</code>"))
            rows.extend(_timeout_rows(options))
        case StartChild(args=args, kwargs=kwargs, workflow_id=workflow_id):
            rows.append(
                ("arguments", f"<code>({escape(call_args(args, kwargs))})</code>")
            )
            if workflow_id is not None:
                rows.append(("workflow id", f"<code>{escape(workflow_id)}</code>"))
            rows.append(("on parent close", escape(command.parent_close)))
        case StartTimer(seconds=seconds):
            rows.append(("duration", escape(format_duration(seconds))))
        case WaitSignal(timeout=timeout) | WaitCondition(timeout=timeout):
            rows.append(
                (
                    "timeout",
                    escape(format_duration(timeout) if timeout is not None else "none"),
                )
            )
        case SendSignal(workflow_id=target, payload=payload):
            rows.append(("to", f"<code>{escape(target)}</code>"))
            rows.append(("payload", f"<code>{escape(json_text(payload))}</code>"))
        case GetVersion(change_id=change_id, min_supported=lo, max_supported=hi):
            rows.append(("change", f"<code>{escape(change_id)}</code>"))
            rows.append(("supported", escape(f"{lo} … {hi}")))
        case Patched(change_id=change_id):
            rows.append(("change", f"<code>{escape(change_id)}</code>"))
        case SetTags(tags=tags):
            rows.append(("tags", f"<code>{escape(json_text(tags))}</code>"))
        case ContinueAsNew(args=args, kwargs=kwargs):
            rows.append(
                ("arguments", f"<code>({escape(call_args(args, kwargs))})</code>")
            )
        case Gather(commands=children) | Race(commands=children):
            items = "".join(
                f"<li>{escape(describe_command(child))}"
                f"{table(_command_details(child))}</li>"
                for child in children
            )
            rows.append(("commands", f"<ol start=0>{items}</ol>"))
        case RecordSideEffect() | RegisterQuery():
            pass
        case _:
            pass
    return rows


def _command_title(command: object) -> str:
    description = describe_command(command)
    if isinstance(command, (CallActivity, StartChild)):
        description += f"({call_args(command.args, command.kwargs, 60)})"
    return description


def command_html(command: object) -> str:
    """A command as a card: what it asks for and with which arguments."""
    rows = _command_details(command)
    kind = type(command).__name__
    head = f"<b>{escape(describe_command(command))}</b> "
    head += f'<span class="fg-muted">{escape(kind)} command</span>'
    return wrap(head + (table(rows) if rows else ""))


# ---------------------------------------------------------------------------------------------
# The Stepper.


def _locals_table(variables: Mapping[str, object]) -> str:
    rows = []
    for name, value in variables.items():
        if name.startswith("."):  # comprehension internals
            continue
        try:
            text = repr(value)
        except Exception as exc:  # noqa: BLE001  # a broken __repr__ must not break the view
            text = f"<repr failed: {type(exc).__name__}>"
        rows.append((name, f"<code>{escape(shorten(text, _LOCAL_CHARS))}</code>"))
    return table(rows) if rows else '<span class="fg-muted">none</span>'


# How Jupyter names the code of a cell: ipykernel compiles it as a temp file
# (``/tmp/ipykernel_3812/1834760319.py``), plain IPython as ``<ipython-input-4-...>``.
_NOTEBOOK_CELL = re.compile(
    r"(?:[/\\]ipykernel_\d+[/\\]\d+\.py|<ipython-input-[^>]*>)$"
)


def yield_site_label(site: str) -> str:
    """A ``file:line`` yield site as a reader wants it: the file's name, or the cell's line.

    A kernel's temp-file path means nothing to a reader and changes with every kernel, so a
    workflow defined in a notebook is shown as ``line 42 of a notebook cell``; one in a
    module as ``orders.py:42`` (the whole path is the tooltip).
    """
    path, sep, line = site.rpartition(":")
    if not sep or not line.isdigit():
        return site
    if _NOTEBOOK_CELL.search(path):
        return f"line {line} of a notebook cell"
    return f"{PurePath(path).name}:{line}"


def _pending_details(command: object) -> list[tuple[str, str]]:
    # An activity's title shows its arguments already: only its timeouts are added.
    if isinstance(command, CallActivity):
        return _timeout_rows(command.options)
    return _command_details(command)


def stepper_html(
    *,
    workflow: str,
    status: str,
    pending: Mapping[int, object] | None,
    variables: Mapping[str, object],
    history: Sequence[Event],
    result: object = None,
    error: ErrorInfo | None = None,
    position: str = "",
) -> str:
    """A Stepper: the pending command(s), the workflow's locals and the history so far.

    Args:
        workflow: The workflow's name.
        status: The run's status (``waiting``, ``completed``, ...).
        pending: The awaited commands by seq (``None`` or empty once the run has ended).
        variables: The workflow function's local variables where it is suspended.
        history: The events recorded so far.
        result: The result, once completed.
        error: The failure, once failed or cancelled.
        position: Where the generator is suspended, e.g. ``"orders.py:42"``.
    """
    head = f"<b>Stepper</b> <code>{escape(workflow)}</code> {badge(status)}"
    if position:
        site = re.match(r"(.+:\d+)(.*)$", position)  # "file:line (outcome 3 of 4)"
        label = yield_site_label(site[1]) + site[2] if site else position
        # The whole path as a tooltip, unless it is a kernel's temp file.
        tooltip = (
            f' title="{escape(site[1])}"'
            if site and not label.startswith("line ")
            else ""
        )
        head += f' <span class="fg-muted"{tooltip}>at {escape(label)}</span>'
    rows: list[tuple[str, str]] = []
    if pending:
        items = "".join(
            f"<li><code>seq {seq}</code> <b>{escape(_command_title(command))}</b>"
            f"{details_table(_pending_details(command))}</li>"
            for seq, command in sorted(pending.items())
        )
        rows.append(("pending", f"<ul>{items}</ul>"))
    elif status == "completed":
        rows.append(("result", f"<code>{escape(shorten(repr(result), 2000))}</code>"))
    elif error is not None:
        rows.append(("error", error_html(error)))
    rows.append(("locals", _locals_table(variables)))
    body = table(rows)
    body += (
        f"<details open><summary>history so far ({len(history)} events)</summary>"
        f"{history_table(history)}</details>"
    )
    return wrap(head + body)


# ---------------------------------------------------------------------------------------------
# Install the reprs on the command classes (which must not import this module).


def _install() -> None:
    for cls in COMMAND_KINDS:
        setattr(cls, "_repr_html_", command_html)  # noqa: B010  # a method, set from outside


_install()
