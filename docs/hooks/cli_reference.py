"""mkdocs hook: renders the `dermpipe` Typer app's help, every command and sub-command, into the CLI reference page
at build time, so the page cannot drift from the code (a hand-copied help text would)."""

from typing import Any

MARKER = "<!-- dermpipe-cli-reference -->"


def cli_reference() -> str:
    """The Markdown of `dermpipe --help` and of each command's --help, as Typer's own docs generator writes it."""
    import typer.main
    from typer.cli import get_docs_for_click

    from dermpipe.cli.main import app

    command = typer.main.get_command(app)
    text = get_docs_for_click(obj=command, ctx=typer.Context(command), name="dermpipe", title="CLI reference")
    return text.strip() + "\n"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replaces the marker of the CLI reference page; other pages pass through unchanged."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
