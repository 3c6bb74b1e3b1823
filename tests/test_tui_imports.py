"""The cockpit's modules form no import cycle (type-only imports count too), and none is too long: the
panes and the palette are handed what they need (tui.widgets.base.PaneKit, tui.commands.PaletteHost),
never the app."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUI = ROOT / "tui"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The tui modules a file imports anywhere in it (at the top, in a function, under TYPE_CHECKING)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {m for m in out if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    files = sorted(TUI.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports(f, modules) for f in files}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in g[v]:
                out.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_type_only_imports():
    g = graph()
    assert "tui.tutor_thread" in g["tui.detach"]  # (under TYPE_CHECKING only)
    assert "tui.keys" in g["tui.widgets.base"] and "tui.panes" in g["tui.actions"]


def test_no_import_cycle_in_tui():
    assert cycles(graph()) == []


def test_no_pane_dialog_or_palette_imports_the_app_or_its_rooms():
    app_side = {"tui.app", "tui.room", "tui.intake", "tui.controls", "tui.lifecycle", "tui.actions"}
    g = graph()
    below = [m for m in g if m.startswith("tui.widgets") or m in ("tui.screens", "tui.commands", "tui.keys")]
    assert {m: g[m] & app_side for m in below if g[m] & app_side} == {}


def test_no_tui_module_is_over_500_lines_and_the_app_and_its_rooms_under_400():
    lengths = {module_name(f): len(f.read_text(encoding="utf-8").splitlines()) for f in TUI.rglob("*.py")}
    assert {m: n for m, n in lengths.items() if n > 500} == {}
    rooms = ("tui.app", "tui.room", "tui.intake", "tui.controls", "tui.lifecycle")
    assert {m: lengths[m] for m in rooms if lengths[m] >= 400} == {}
