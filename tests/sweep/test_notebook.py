"""The notebook job in a real Jupyter kernel (nbclient, ipykernel; no ipywidgets installed, as in
a plain Jupyter): `sweep.run` shows its summary as HTML with a text progress bar and no warning,
and `sweep.load_runs` gives the frame to compare."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import spec_text, write_idx_dataset

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_sweep_from_a_notebook_shows_its_summary_and_its_runs(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    data = write_idx_dataset(tmp_path / "blobs", n_train=300, n_test=100)
    study = tmp_path / "nb.toml"
    study.write_text(spec_text("nb", data, lr="{ values = [0.1, 1.0] }", batch="[16]"))
    home = tmp_path / "home"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import sweep\nresult = sweep.run({str(study)!r}, home={str(home)!r})\nresult"
        ),
        nbformat.v4.new_code_cell(
            f"runs = sweep.load_runs('nb', home={str(home)!r})\n"
            "runs[['trial', 'outcome', 'val_accuracy']]"
        ),
    ]
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    ran, compared = notebook.cells
    said = "".join(o.get("text", "") for cell in notebook.cells for o in cell.outputs)
    assert "Warning" not in said and "Traceback" not in said, said
    assert "4/4 trials" in said  # tqdm's text bar, on stderr
    (summary,) = [o for o in ran.outputs if o.output_type == "execute_result"]
    assert "test accuracy" in summary["data"]["text/html"]
    (frame,) = [o for o in compared.outputs if o.output_type == "execute_result"]
    assert frame["data"]["text/plain"].count("complete") == 4
