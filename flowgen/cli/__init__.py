"""Layer 4, the command line: ``flowgen [--db PATH] COMMAND``.

`main` parses and runs a command; `demo` is ``flowgen demo``; `table` prints plain-text
tables.
"""

from flowgen.cli.main import main

__all__ = ["main"]
