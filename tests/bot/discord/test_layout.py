"""bot/discord is laid out by feature with no import circle: each module's run-time imports of the other
modules of bot/discord (deferred ones included, not those under ``TYPE_CHECKING``) form a graph without a
cycle, and no module is a catch-all."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import bot.discord

PACKAGE = Path(bot.discord.__file__).parent


def runtime_imports(path: Path) -> set[str]:
    """The bot.discord modules ``path`` imports when it runs, at its top or inside a function (a deferred
    import only hides a circle); what it imports for the type checker alone does not count."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bot.discord"):
            if node.module == "bot.discord":
                found.update(f"bot.discord.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bot.discord."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_import_cycle_in_bot_discord() -> None:
    graph = {f"bot.discord.{p.stem}": runtime_imports(p) for p in PACKAGE.glob("*.py")}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {err.args[1]}") from None
    assert "bot.discord.app" in order
    assert all(len(path.read_text().splitlines()) <= 350 for path in PACKAGE.glob("*.py"))


def test_the_discord_frontend_has_the_protocols_signatures() -> None:
    """mypy accepts a protocol method whose parameters are named otherwise; the notifier may pass them by
    name, so each of ``Frontend``'s methods is checked here, names and kinds (issue 18: ``tell``)."""
    import inspect

    from bot.discord.frontend import DiscordFrontend
    from bot.frontend import Frontend

    def shape(function: object) -> list[tuple[str, object]]:
        return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]  # type: ignore[arg-type]

    methods = [name for name, value in vars(Frontend).items() if inspect.iscoroutinefunction(value)]
    assert "tell" in methods
    for name in methods:
        assert shape(getattr(DiscordFrontend, name)) == shape(getattr(Frontend, name)), name
    assert DiscordFrontend.platform == "discord"
