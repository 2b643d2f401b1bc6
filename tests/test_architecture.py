"""The dependency direction of docs/design.md, checked by import-linter."""

import ast
import pathlib
import shutil
import subprocess

import pytest


def test_layers_point_one_way(repo_root):
  exe = shutil.which("lint-imports")
  if exe is None:
    pytest.fail("import-linter is a dev dependency: pip install -e '.[dev]'")
  result = subprocess.run([exe], cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Contracts: 2 kept, 0 broken" in result.stdout


def test_library_never_imports_experiments(repo_root):
  for path in (repo_root / "jaxdl").rglob("*.py"):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module]
      for name in names:
        assert not name.startswith("experiments"), f"{path} imports {name}"
