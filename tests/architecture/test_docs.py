"""The manual (docs/, built by `make test` with `mkdocs build --strict`) against the code: the architecture page's
layout names every module, the CLI reference is rendered from the Typer app, and nothing cites the team's design
sketch, which users do not have (the architecture page replaces it)."""

import importlib.util
import re
import subprocess
from pathlib import Path

import typer.main

from dermpipe.cli.main import app

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"
ROOTS = ("dermpipe", "components", "pipelines")
# top-level entries (column 0) and dermpipe's subpackages (column 2) of the layout block, e.g. "  serving/   ..."
HEADER = re.compile(r"^( {0,2})([a-z_]+/) ")


def _layout_sections() -> dict[str, str]:
    """The layout code block of the architecture page, split into its folders' text ('serving/' -> its lines);
    'dermpipe/' holds all of dermpipe's subpackages' lines too."""
    page = ARCHITECTURE.read_text()
    block = page.split("## Layout", 1)[1].split("```", 2)[1]
    sections: dict[str, str] = {}
    current, top = "", ""
    for line in block.splitlines():
        found = HEADER.match(line)
        if found:
            current = found.group(2)
            top = current if not found.group(1) else top
        sections[current] = sections.get(current, "") + line + "\n"
        if top == "dermpipe/" and current != top:
            sections[top] += line + "\n"
    return sections


def _section_of(path: Path) -> str:
    """The layout folder a module is listed under: components/, pipelines/, dermpipe/ (root modules) or dermpipe's
    subpackage (its sub-folders are listed inside it: training/, evaluation/, sources/, ui/)."""
    parts = path.relative_to(REPO).parts
    if parts[0] != "dermpipe":
        return f"{parts[0]}/"
    return "dermpipe/" if len(parts) == 2 else f"{parts[1]}/"


def test_the_layout_names_every_module_under_its_folder():
    sections = _layout_sections()
    missing = []
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            section = _section_of(path)
            if not re.search(rf"\b{re.escape(path.name)}\b", sections.get(section, "")):
                missing.append(f"{path.relative_to(REPO)} (under {section})")
    assert not missing, f"docs/architecture.md's layout does not list: {missing}; add each with a few words on it"


def test_a_module_left_out_of_the_layout_is_found():
    """The check above reads the folder's own lines: a name listed under another folder does not count."""
    sections = _layout_sections()
    assert "grpc_server.py" in sections["serving/"]
    assert "grpc_server.py" not in sections["deploy/"]
    assert "prepare.py" in sections["components/"] and "prepare.py" in sections["data/"]
    assert _section_of(REPO / "dermpipe" / "model" / "training" / "loop.py") == "model/"
    assert _section_of(REPO / "dermpipe" / "storage.py") == "dermpipe/"


def _cli_reference_hook():
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "docs" / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_rendered_from_the_typer_app():
    hook = _cli_reference_hook()
    page = (REPO / "docs" / "cli-reference.md").read_text()
    rendered = hook.on_page_markdown(page, page=None)
    assert hook.MARKER not in rendered
    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        assert f"## `dermpipe {name}`" in rendered, f"dermpipe {name} is missing from the CLI reference"
        for option in getattr(sub, "params", []):
            shown = option.param_type_name == "option" and not getattr(option, "hidden", False)
            flags = [*option.opts, *option.secondary_opts] if shown else []
            for flag in flags:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", rendered), (
                    f"dermpipe {name} {flag} is missing from the CLI reference")
        for child in getattr(sub, "commands", {}):
            assert f"`dermpipe {name} {child}`" in rendered, f"dermpipe {name} {child} is missing"
    assert hook.on_page_markdown("# another page\n", page=None) == "# another page\n"


def test_nothing_cites_the_design_sketch():
    """Users do not have the team's design sketch: code and docs cite docs/architecture.md instead."""
    name = "DESIGN" + ".md"
    tracked = subprocess.run(["git", "grep", "-l", name], cwd=REPO, capture_output=True, text=True)
    assert tracked.returncode in (0, 1), tracked.stderr
    assert tracked.stdout == "", f"files citing {name}: {tracked.stdout.split()}; cite docs/architecture.md"



def test_the_readme_is_short_and_its_links_resolve():
    """The README is the front door (what it is, the two commands, a tour, links); the manual is docs/. mkdocs does
    not read the README, so its links into the repository are checked here."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "README.md is over 300 lines: move the detail to a page of docs/"
    targets = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", readme)]
    local = [target for target in targets if target and not target.startswith(("http://", "https://"))]
    assert "docs/architecture.md" in local and "docs/cli-reference.md" in local
    broken = [target for target in local if not (REPO / target).is_file()]
    assert not broken, f"README.md links to files that do not exist: {broken}"
