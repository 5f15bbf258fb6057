"""The project's promises about itself: CI runs the README's test command; layers import downwards."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "soundalike"
LAYERS = ["errors", "audio", "features", "models", "analysis", "library", "recommend", "playlist_files",
          "playlists", "families", "server", "datasets", "evaluation", "train", "cli"]


def readme_commands():
    return re.findall(r"```sh\n(python3 -m venv .*?)\n```", (ROOT / "README.md").read_text())


def test_readme_has_two_setup_commands_installing_torch_first():
    commands = readme_commands()
    assert len(commands) == 2
    for command in commands:
        package = re.search(r"pip install (\.|'\.\[test\]') ", command)
        assert package and command.index("pip install torch==2.13.0") < package.start()


def test_ci_runs_the_readme_test_command():
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def _imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            parts = (node.module or "").split(".")
            # from .x import / from ..x import (inside soundalike.models)
            found.add(parts[0] if parts[0] else "")
            if not parts[0]:
                found.update(alias.name for alias in node.names)
    return {name for name in found if name in LAYERS}


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downwards(layer):
    files = [PACKAGE / f"{layer}.py"] if (PACKAGE / f"{layer}.py").exists() else \
        sorted((PACKAGE / layer).glob("*.py"))
    allowed = set(LAYERS[: LAYERS.index(layer)])
    for path in files:
        assert _imported_layers(path) <= allowed | {layer}, path
