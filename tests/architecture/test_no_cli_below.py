"""No library module runs or imports the command line (#30): the CLI is the top layer. import-linter sees imports,
not `python -m dermpipe.cli.main ...` in a child process nor the `dermpipe` script run by name, so this reads the
source of everything below the CLI (dermpipe/ outside cli/, components/, pipelines/) for both."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BELOW_CLI = [p for folder in ("dermpipe", "components", "pipelines") for p in (ROOT / folder).rglob("*.py")
             if "cli" not in p.relative_to(ROOT).parts]
# code that names the CLI module, or a command list that starts the `dermpipe` script
CALLS = re.compile(r"""(?:from|import)\s+dermpipe\.cli\b|["']dermpipe\.cli[.\w]*["']|\[\s*["']dermpipe["']\s*,""")


def _code(path: Path) -> str:
    """The source without its comment lines."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines)


def test_no_module_below_the_cli_runs_or_imports_it():
    assert len(BELOW_CLI) > 50  # the walk found the library
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in BELOW_CLI for m in CALLS.finditer(_code(p))]
    assert found == [], "run the layer below, not the command line:\n" + "\n".join(found)


def test_the_check_sees_the_ways_a_module_could_call_the_cli():
    for code in ("from dermpipe.cli.main import app", "import dermpipe.cli.progress",
                 'CLI = [sys.executable, "-m", "dermpipe.cli.main"]', 'subprocess.run(["dermpipe", "run"])'):
        assert CALLS.search(code), code
    assert not CALLS.search("the observer draws the progress (dermpipe.cli.progress)")
