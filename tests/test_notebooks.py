"""Every notebook in notebooks/ runs top to bottom on a shortened config."""

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(p.name for p in (__import__("pathlib").Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(repo_root, name, monkeypatch):
  monkeypatch.setenv("JAXDL_NOTEBOOK_QUICK", "1")
  monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend
  nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(repo_root / "notebooks")}}).execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
  assert any(o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})
             for c in nb.cells for o in c.get("outputs", [])), "the notebook shows no plot"


def test_quickstart_exists():
  assert "quickstart.ipynb" in NOTEBOOKS
