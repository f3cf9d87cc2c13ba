"""The import graph of flowgen has no cycle, imports inside functions included.

The layer contract (``lint-imports``) forbids a lower layer importing a higher one; this test
also forbids cycles *within* a layer (``engine -> handle -> engine``), which the contract
cannot see. Imports under ``if TYPE_CHECKING:`` are for the type checker only and are left
out, as in the contract.
"""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected group of two or more modules, each as one cycle through it."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    cycles = []
    for group in groups:
        first, members = group[0], set(group)
        back = [
            m for m in members if graph.direct_import_exists(importer=m, imported=first)
        ]
        chain = graph.find_shortest_chain(importer=first, imported=back[0]) or ()
        cycles.append([*chain, first] if chain else group)
    return cycles


def test_cycles_are_found_and_named() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    assert _cycles(graph) == []
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_flowgen_has_no_import_cycle() -> None:
    graph = grimp.build_graph("flowgen", exclude_type_checking_imports=True)
    cycles = _cycles(graph)
    assert not cycles, "import cycles in flowgen:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )
