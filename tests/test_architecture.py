"""The import contract in pyproject.toml holds, and an upward import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the ``callsbot`` package found first in ``cwd``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_of_the_project(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "callsbot", tmp_path / "callsbot", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contract_holds_on_the_code_as_it_is(tmp_path: Path) -> None:
    result = lint_imports(copy_of_the_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("models.py", "callsbot.runtime.roles"),  # the bottom importing the wiring
        ("scoring.py", "callsbot.sources.cielo"),  # pure scoring importing an adapter
        ("sources/export.py", "callsbot.aggregator"),  # a source importing the pipeline
        ("web.py", "callsbot.runtime.app"),  # web and app importing each other again
        ("outcomes/path.py", "callsbot.config"),  # the pure outcome maths reading settings
        ("outcomes/report.py", "matplotlib"),  # the pure report loading a plotting library
        ("reputation/weights.py", "callsbot.store.memory"),  # pure reputation reading a store
        ("reputation/independence.py", "redis"),  # ... or a client library
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    copy = copy_of_the_project(tmp_path)
    path = copy / "callsbot" / module
    path.write_text(path.read_text() + f"\nimport {upward}  # planted\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert upward in result.stdout
