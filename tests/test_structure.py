"""The house's structure: no import circle among the product's modules (shared/, services/), counting every import
a module makes, those under TYPE_CHECKING and inside functions included; and the pure core imports no adapter,
service or I/O library."""
from __future__ import annotations

import ast
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]
IO_LIBS = {"redis", "requests", "rq", "websockets", "socket", "subprocess", "http", "urllib", "starlette", "uvicorn"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in [*(HOME / "shared").rglob("*.py"), *(HOME / "services").rglob("*.py")]:
        name = ".".join(p.relative_to(HOME).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(p: Path) -> set[str]:
    names = set()
    for n in ast.walk(ast.parse(p.read_text())):
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            names |= {n.module, *(f"{n.module}.{a.name}" for a in n.names)}
        elif isinstance(n, ast.Import):
            names |= {a.name for a in n.names}
    return names


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    mods = _modules()
    graph = {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}
    assert len(graph) > 100
    assert _cycles(graph) == []


def test_the_pure_core_imports_no_adapter_service_or_io():
    mods = _modules()
    for name, p in mods.items():
        if not name.startswith("shared.domain."):
            continue
        bad = {i for i in _imports(p) if i.startswith(("shared.adapters", "services."))
               or i.split(".")[0] in IO_LIBS}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_shared_never_imports_a_service():
    for name, p in _modules().items():
        if name.startswith("shared."):
            bad = {i for i in _imports(p) if i.startswith("services")}
            assert not bad, f"{name} imports {sorted(bad)}"
