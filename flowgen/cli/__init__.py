"""Layer 4, the command line: ``flowgen [--db PATH] COMMAND``.

`main` parses the arguments and runs a command: `inspecting` holds the commands that read
(``ls``, ``show``, ``sql``, ``export``), `operating` those that act on runs (``signal``,
``cancel``, ``worker``, ``check-replay``), `demo` is ``flowgen demo``; `common` finds the
database, `console` decides between a terminal's colour and a pipe's plain text, `table`
lays out plain-text tables.
"""

from flowgen.cli.main import main

__all__ = ["main"]
