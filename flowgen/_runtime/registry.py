"""Names to functions: which workflow and activity code runs for a name in a history.

A history records names, not code. When an engine reopens a file it needs the workflow
function for every unfinished run, and the activity function for every call made by name.
The `Registry` answers from what was registered explicitly (`Engine(activities=[...])`,
`Engine.register`) and falls back to everything decorated with ``@fg.workflow`` and
``@fg.activity`` in the process. Registering an *object* registers its decorated methods
bound to it: the way to give activities shared resources (a connection pool, a client).

Which function an activity attempt runs is decided here, in `Registry.resolve`, for the
engine and the Stepper alike. In order of precedence:

1. a fake given to `Registry.override` (``engine.override_activity``) for the name;
2. a function registered explicitly under the name (so a fake registered under an
   activity's name runs instead of it, never silently beside it);
3. the function the workflow passed to ``fg.call``, unless it is a method named on its
   class (``fg.call(Bank.charge, ...)``), which cannot run unbound;
4. the function decorated under the name anywhere in the process.

An override replaces the code only: the attempt keeps the options (retry policy,
timeout) of the activity the workflow calls, so a test with a failing fake sees the
retries production would make. A registered function brings its own definition.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator, Iterable
from typing import Any

from flowgen._core.decisions import signature_of
from flowgen._core.dsl import (
    ACTIVITIES,
    WORKFLOWS,
    ActivityDefinition,
    WorkflowDefinition,
    activity_definition,
    workflow_definition,
)
from flowgen._vocabulary.commands import CallActivity
from flowgen._vocabulary.errors import UnknownActivity, UnknownWorkflow

__all__ = ["Registry"]

WorkflowFn = Callable[..., Generator[Any, Any, object]]


class Registry:
    """Workflow and activity functions by registered name."""

    def __init__(self) -> None:
        # Written by the caller's thread (register, override), read by any thread (the
        # decision loop, activity threads) without a lock: each write is one dict item
        # assignment, atomic for readers, and it applies to the attempts that start after.
        self._workflows: dict[str, WorkflowDefinition] = {}
        self._activities: dict[
            str, tuple[ActivityDefinition, Callable[..., object]]
        ] = {}
        self._overrides: dict[str, Callable[..., object]] = {}
        # The dicts are written by `register` (a caller's thread) and `workflow` (the
        # decision loop), and read by the loop and activity threads, without a lock: every
        # access is one dict operation (`get`, `setdefault`, an item assignment, a C-level
        # copy of the keys), atomic under the GIL, and an entry is replaced, never mutated.

    def register(self, *items: object) -> None:
        """Register workflow functions, activity functions, or objects with activity methods.

        Raises:
            TypeError: If an item is none of these.
        """
        for item in items:
            if inspect.isgeneratorfunction(item):
                definition = workflow_definition(item)
                self._workflows[definition.name] = definition
            elif callable(item) and not isinstance(item, type):
                fn: Callable[..., object] = item
                self._activities[activity_definition(fn).name] = (
                    activity_definition(fn),
                    fn,
                )
            else:
                found = False
                for _, member in inspect.getmembers(item, callable):
                    definition_ = getattr(member, "__flowgen_activity__", None)
                    if isinstance(definition_, ActivityDefinition) and inspect.ismethod(
                        member
                    ):
                        self._activities[definition_.name] = (definition_, member)
                        found = True
                if not found:
                    raise TypeError(
                        f"register() takes workflow functions, activity functions or objects "
                        f"with @fg.activity methods; {item!r} is none of these"
                    )

    def workflow(self, name_or_fn: str | WorkflowFn) -> WorkflowDefinition:
        """The workflow definition for a name or function.

        Raises:
            UnknownWorkflow: No workflow of that name is known.
        """
        if not isinstance(name_or_fn, str):
            definition = workflow_definition(name_or_fn)
            self._workflows.setdefault(definition.name, definition)
            return definition
        found = self._workflows.get(name_or_fn) or WORKFLOWS.get(name_or_fn)
        if found is None:
            known = ", ".join(sorted({*self._workflows, *WORKFLOWS})) or "none"
            raise UnknownWorkflow(
                f"no workflow named {name_or_fn!r} is registered (known: {known}); import the "
                f"module that defines it, or pass it to Engine(workflows=[...])"
            )
        return found

    def activity(self, name: str) -> tuple[ActivityDefinition, Callable[..., object]]:
        """The activity definition and the callable to run for *name*.

        Raises:
            UnknownActivity: No activity of that name is known.
        """
        found = self._activities.get(name)
        if found is not None:
            return found
        definition = ACTIVITIES.get(name)
        if definition is None or _needs_instance(definition.fn):
            known = ", ".join(sorted({*self._activities, *ACTIVITIES})) or "none"
            raise UnknownActivity(
                f"no activity named {name!r} is registered (known: {known}); decorate it with "
                f"@fg.activity, or pass it (or the object owning it) to Engine(activities=[...])"
            )
        return definition, definition.fn

    def override(
        self, activity: str | Callable[..., object], fake: Callable[..., object]
    ) -> None:
        """Run *fake* instead of *activity*, wherever a workflow calls it.

        Args:
            activity: The activity, or its registered name.
            fake: What runs instead, with the arguments the activity gets.

        Raises:
            UnknownActivity: *activity* is a name no activity is registered under.
            TypeError: *activity* is not an activity, or *fake* is not callable.
        """
        if not callable(fake):
            raise TypeError(
                f"override_activity() needs a function as the fake, got {fake!r}"
            )
        self._overrides[self._activity_name(activity)] = fake

    def _activity_name(self, activity: object) -> str:
        if isinstance(activity, str):
            if activity not in self._activities and activity not in ACTIVITIES:
                known = ", ".join(sorted({*self._activities, *ACTIVITIES})) or "none"
                raise UnknownActivity(
                    f"no activity named {activity!r} is registered (known: {known}); "
                    f"override_activity() takes an activity or its registered name"
                )
            return activity
        if not callable(activity) or inspect.isgeneratorfunction(activity):
            raise TypeError(
                f"override_activity() takes an activity or its registered name; "
                f"{activity!r} is a workflow or no function at all"
            )
        return activity_definition(activity).name

    def resolve(
        self, command: CallActivity[Any]
    ) -> tuple[ActivityDefinition, Callable[..., object]]:
        """The definition and the function an attempt of *command* runs.

        See the module docstring for the order of precedence.

        Raises:
            UnknownActivity: No activity of that name is known.
        """
        fake = self._overrides.get(command.name)
        if fake is not None:
            try:
                definition = self._called(command)[0]
            except UnknownActivity:  # called by name, known only by its fake
                definition = ActivityDefinition(command.name, fake, command.options)
            return definition, fake
        registered = self._activities.get(command.name)
        if registered is not None:
            return registered
        return self._called(command)

    def _called(
        self, command: CallActivity[Any]
    ) -> tuple[ActivityDefinition, Callable[..., object]]:
        # What the workflow's call designates, before registrations and overrides.
        if command.fn is not None and not _needs_instance(command.fn):
            return activity_definition(command.fn), command.fn
        return self.activity(command.name)

    @property
    def workflow_names(self) -> list[str]:
        """Every known workflow name."""
        return sorted({*self._workflows, *WORKFLOWS})

    def update(self, items: Iterable[object]) -> None:
        """Register every item of *items*."""
        self.register(*items)


@functools.lru_cache(maxsize=4096)  # asked at every activity call: inspect costs ~20 us
def _needs_instance(fn: Callable[..., object]) -> bool:
    # A method decorated in a class body is a plain function whose qualname has a dot
    # before its name and whose first parameter is `self`: it cannot run unbound.
    signature = signature_of(fn)
    if signature is None:
        return False
    parameters = list(signature.parameters)
    return "." in getattr(fn, "__qualname__", "") and parameters[:1] == ["self"]
