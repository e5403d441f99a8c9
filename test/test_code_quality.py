"""ament-style lint tests: ruff (flake8 + pep257 + isort rules, and its formatter) and the import-linter architecture
contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f'{name} is not installed (requirements/dev.txt)'
    return found


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool('ruff'), 'check', '.'], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_the_code_as_it_is() -> None:
    result = subprocess.run(
        [_tool('ruff'), 'format', '--check', '.'], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    result = subprocess.run([_tool('lint-imports')], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Contracts: ' in result.stdout
    assert '0 broken' in result.stdout
