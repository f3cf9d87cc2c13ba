"""`Engine.update`: a thin, checked entry into the rules of `flowgen._runtime.updates`.

A mixin, as `flowgen._runtime.schedule_api` is, so the engine's module stays the life
cycle and the run API. The rules live in `flowgen._runtime.updates` (an update on the
decision loop) and `flowgen._runtime.fleet_updates` (an update to a run another engine of
a fleet holds); this module only checks arguments, submits and waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowgen._runtime.fleet_requests import wait_remote_update
from flowgen._runtime.items import Item
from flowgen._runtime.results import ResultWaiter
from flowgen._runtime.updates import UpdateTicket, update_item
from flowgen._stores.protocol import Store
from flowgen._vocabulary.errors import FlowgenError

__all__ = ["UpdateMethods"]


class UpdateMethods:
    """The update method of `Engine`."""

    _results: ResultWaiter
    store: Store
    _failure: FlowgenError | None

    if TYPE_CHECKING:  # the engine's own

        def _submit(self, item: Item) -> object: ...
        def _check_id(self, value: object) -> str: ...

    def update(
        self,
        workflow_id: str,
        name: str,
        *args: object,
        update_id: str | None = None,
        timeout: float | None = None,
    ) -> object:
        """Send an update to a running workflow and wait for its handler's result.

        ``engine.update("cart-1", "add_item", "apple")``. The handler was registered with
        ``yield fg.on_update(name, handler, validator=...)``. Its validator runs first, on
        the workflow's current state: if it raises, `UpdateRejected` is raised here and
        nothing is recorded. Otherwise the update is recorded, the handler runs (it may
        yield commands: activities, timers, ...), and its result comes back, decoded to
        the handler's return annotation. See ``docs/concepts.md``, "Updates". On a
        PostgreSQL fleet, an update to a run another engine holds is sent to that engine,
        which validates and runs it; the answers are the same (``docs/postgres.md``).

        Args:
            workflow_id: The workflow id (its current run gets the update).
            name: The update's name.
            *args: Positional arguments for the validator and the handler (serializable).
            update_id: The update's id, unique in the run: a call with the id of an update
                the run already accepted waits for that update's answer instead of
                sending it again (a retry after a timeout or a crash). A fresh id if
                omitted.
            timeout: Seconds to wait for the handler's result; ``None`` waits as long as
                it takes. The update goes on after a timeout.

        Returns:
            The handler's result.

        Raises:
            UpdateRejected: The validator raised (its exception is the ``__cause__``), the
                workflow has no handler of that name, or the arguments do not fit it;
                nothing was recorded.
            UpdateFailed: The accepted update's handler raised (recorded).
            UnknownWorkflow: No run has this id.
            WorkflowClosed: The run has finished, or finished before the update did.
            TimeoutError: *timeout* passed first.
            TypeError, ValueError: A bad id, name, timeout or an argument that cannot be
                serialized (before anything is recorded).
        """
        ticket = self._send_update(workflow_id, name, args, update_id, timeout)
        if ticket.remote is not None:  # posted to the engine of the fleet holding it
            return wait_remote_update(
                self.store, ticket, timeout, lambda: self._failure
            )
        return self._results.update_end(ticket, timeout)

    def _send_update(
        self,
        workflow_id: str,
        name: str,
        args: Sequence[object],
        update_id: str | None,
        timeout: float | None,
    ) -> UpdateTicket:
        """Check, encode and submit an update; the ticket its end will be told on."""
        item = update_item(self._check_id(workflow_id), name, args, update_id, timeout)
        ticket = self._submit(item)
        assert isinstance(ticket, UpdateTicket)
        return ticket
