"""The architecture, enforced: imports point one way and every module stays readable.

    bot → answers → retrieval        answers → prompts        bot/cli → bot/slack

- `prompts` imports nothing of the project; `retrieval` (the corpus) imports only itself.
- `answers` and `bot` use the corpus through its public API only: ``import retrieval`` or
  ``from retrieval import name`` with ``name`` in ``retrieval.__all__``, never a submodule.
- `bot/slack` never imports `bot/cli` (the CLI may reuse Slack's pure pieces, not the reverse).
- No import cycles between modules, counting imports inside functions and TYPE_CHECKING blocks
  too: a lazy import is still a dependency.
- A product module over MAX_LINES lines says why at its top (a ``Size:`` line in its docstring).

The checker is a pure function over source files, so the tests below also prove that it
catches a violation, not only that today's tree has none.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("prompts", "retrieval", "answers", "bot")
MAX_LINES = 450

# Which top-level packages each package may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "prompts": set(),
    "retrieval": set(),
    "answers": {"retrieval", "prompts"},
    "bot": {"answers", "retrieval"},
}
PUBLIC_ONLY = {"retrieval"}  # packages others may use only through their __init__ API


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "answers.qa"
    target: str  # the imported module, resolved to a module or package, e.g. "retrieval"
    names: tuple[str, ...]  # for `from X import a, b`: ("a", "b"); else ()
    line: int
    via: str = ""  # for `from X import submodule`: X


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    return {
        module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }


def imports_of(module: str, source: str, modules: set[str]) -> Iterator[Import]:
    """Every project import in a module's source, wherever it stands in the file.

    Relative imports come back with target "." (the project uses absolute imports only)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield Import(module, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                yield Import(module, ".", (), node.lineno)
                continue
            if base.split(".")[0] not in PACKAGES:
                continue
            names = tuple(a.name for a in node.names)
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            for target in submodules:  # `from retrieval import feeds` imports a module
                yield Import(module, target, (target.rsplit(".", 1)[1],), node.lineno, base)
            rest = tuple(n for n in names if f"{base}.{n}" not in modules)
            if rest:
                yield Import(module, base, rest, node.lineno)


def public_names(root: Path, package: str) -> set[str]:
    """A package's exported names, read without importing it: the keys of its lazy-export
    table ``_EXPORTS`` when it has one, else its literal ``__all__``."""
    tree = ast.parse((root / package / "__init__.py").read_text())
    assigned = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    if "_EXPORTS" in assigned:
        return set(ast.literal_eval(assigned["_EXPORTS"]))
    if "__all__" in assigned:
        return set(ast.literal_eval(assigned["__all__"]))
    return set()


def violations(root: Path) -> list[str]:
    files = source_files(root)
    modules = set(files)
    public = {p: public_names(root, p) for p in PUBLIC_ONLY}
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in files.items():
        top = module.split(".")[0]
        for imp in imports_of(module, path.read_text(), modules):
            where = f"{path.relative_to(root)}:{imp.line}"
            if imp.target == ".":
                found.append(f"{where}: relative import (use the absolute module path)")
                continue
            target_top = imp.target.split(".")[0]
            if imp.target in modules:
                graph[module].add(imp.target)
            if target_top == top:
                if (
                    top == "bot"
                    and module.startswith("bot.slack")
                    and imp.target.startswith("bot.cli")
                ):
                    found.append(f"{where}: bot/slack imports {imp.target} (the CLI)")
                continue
            if target_top not in ALLOWED[top]:
                found.append(f"{where}: {top} must not import {target_top} ({imp.target})")
            elif target_top in PUBLIC_ONLY and (
                (imp.via or imp.target) != target_top or not set(imp.names) <= public[target_top]
            ):
                hidden = (
                    [imp.target]
                    if (imp.via or imp.target) != target_top
                    else sorted(set(imp.names) - public[target_top])
                )
                found.append(
                    f"{where}: {module} reaches past the {target_top} API: {', '.join(hidden)}"
                )
    found += [f"import cycle: {' → '.join(c)}" for c in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return result


def oversized(root: Path) -> list[str]:
    """Product modules over MAX_LINES lines whose docstring does not say why (``Size:``)."""
    found = []
    for path in source_files(root).values():
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "Size:" not in docstring:
            found.append(f"{path.relative_to(root)}: {lines} lines and no 'Size:' reason")
    return found


# ---------------------------------------------------------------------------- the project
def test_imports_point_one_way_through_public_apis_without_cycles() -> None:
    assert violations(ROOT) == []


def test_modules_stay_readable() -> None:
    assert oversized(ROOT) == []


# ---------------------------------------------------------------------------- the checker
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    base = {
        "prompts/__init__.py": "",
        "retrieval/__init__.py": "from retrieval.corpus import Corpus\n__all__ = ['Corpus']\n",
        "retrieval/corpus.py": "class Corpus: ...\n",
        "retrieval/state.py": "",
        "answers/__init__.py": "",
        "answers/qa.py": "from retrieval import Corpus\nfrom prompts import x\n",
        "bot/__init__.py": "",
        "bot/slack/__init__.py": "",
        "bot/slack/app.py": "from answers import qa\n",
        "bot/cli/__init__.py": "",
        "bot/cli/main.py": "from bot.slack import app\n",
    }
    for name, text in (base | files).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checker_accepts_a_clean_tree(tmp_path: Path) -> None:
    assert violations(_tree(tmp_path, {})) == []


def test_checker_catches_an_upward_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"retrieval/state.py": "def f():\n    from answers import qa\n"})
    [problem] = violations(root)
    assert "retrieval/state.py:2" in problem and "must not import answers" in problem


def test_checker_catches_answers_importing_the_bot(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"answers/qa.py": "from bot.slack.app import x\n"})
    assert any("answers must not import bot" in p for p in violations(root))


def test_checker_catches_reaching_past_the_corpus_api(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "answers/qa.py": "from retrieval.state import StateStore\n",
            "bot/slack/app.py": "from retrieval import Secret\n",
        },
    )
    problems = violations(root)
    assert any("answers.qa reaches past the retrieval API: retrieval.state" in p for p in problems)
    assert any("bot.slack.app reaches past the retrieval API: Secret" in p for p in problems)


def test_checker_catches_slack_importing_the_cli(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"bot/slack/app.py": "import bot.cli.main\n"})
    assert any("bot/slack imports bot.cli.main" in p for p in violations(root))


def test_checker_catches_a_cycle_even_through_lazy_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "bot/cli/main.py": "from bot.cli import other\n",
            "bot/cli/other.py": "def f():\n    from bot.cli.main import app\n",
        },
    )
    assert violations(root) == ["import cycle: bot.cli.main → bot.cli.other"]


def test_oversized_modules_need_a_reason(tmp_path: Path) -> None:
    long_body = "x = 1\n" * (MAX_LINES + 1)
    root = _tree(
        tmp_path,
        {
            "answers/big.py": long_body,
            "answers/big_ok.py": '"""Big.\n\nSize: one state machine, split it and it reads worse."""\n'
            + long_body,
        },
    )
    assert oversized(root) == [f"answers/big.py: {MAX_LINES + 1} lines and no 'Size:' reason"]
