"""Another version of soundalike beside this one, to compare the two in the same run.

    with versions.worktree("99d4b65") as tree:
        subprocess.run(versions.command("index", FOLDER), env=versions.environment(tree))

``worktree`` checks the revision out into a temporary git worktree (removed after);
``environment`` makes this interpreter import soundalike from it (None: this checkout).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A temporary checkout of ``revision`` (any git reference), removed on leaving."""
    with tempfile.TemporaryDirectory(prefix="soundalike-") as tmp:
        tree = Path(tmp) / revision.replace("/", "_")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
                       check=True, capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)


def environment(source: Path | None, **variables: str) -> dict[str, str]:
    """This process's environment (plus ``variables``), importing soundalike from the checkout
    at ``source`` (None: the installed one); RuntimeError when another copy shadows it."""
    env = {**os.environ, **variables}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source / "src"), env.get("PYTHONPATH", "")])
        where = subprocess.run([sys.executable, "-c", "import soundalike; print(soundalike.__file__)"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(str(source)):
            raise RuntimeError(f"{source}: its soundalike is shadowed by {where}")
    return env


def command(*args: str) -> list[str]:
    """The soundalike command line ``args`` run by this interpreter."""
    return [sys.executable, "-m", "soundalike.cli", *args]
