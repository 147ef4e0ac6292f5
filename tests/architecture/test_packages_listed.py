"""Every package folder is in pyproject.toml's explicit `packages` list: a folder left out is missing from the
wheel and the container images, while an editable install here still imports it and every other test passes."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def package_folders() -> set[str]:
    """dotted names of the folders under dermpipe/ that hold an __init__.py, and the two mapped ones."""
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "dermpipe").rglob("__init__.py")}
    return found | {"dermpipe.components", "dermpipe.pipelines"}


def test_every_package_folder_is_listed():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    # a data-only folder (the UI's templates) is a package without __init__.py: it must hold its package-data
    data_only = {name for name in setuptools.get("package-data", {})
                 if (REPO / Path(*name.split("."))).is_dir() and not (REPO / Path(*name.split("."))
                                                                     / "__init__.py").exists()}
    assert package_folders() - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - package_folders() - data_only == set(), "listed in pyproject.toml but no such package folder"
