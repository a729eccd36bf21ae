from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sweep.cli import main


def test_check_prints_the_comparison_table(idx_folder: Path) -> None:
    result = CliRunner().invoke(main, ["check", "--dataset", str(idx_folder), "--samples", "50"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("tiny: 50 samples x 31 features (bias included), 3 classes")
    assert lines[1].split() == ["loss", "value", "time", "(ms)", "speedup"]
    naive, vectorized = lines[3].split(), lines[4].split()
    assert naive[0] == "naive" and vectorized[0] == "vectorized"
    assert naive[1] == vectorized[1]  # the same loss to 10 decimals
    rel_error = float(lines[-1].split()[4])
    assert rel_error < 1e-5


def test_check_unknown_dataset_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["check", "--dataset", "imagenet"])
    assert result.exit_code == 2
    assert "error: Unknown dataset 'imagenet'. Known datasets:" in result.output
    assert "Traceback" not in result.output


def test_check_bad_sample_count() -> None:
    result = CliRunner().invoke(main, ["check", "--samples", "0"])
    assert result.exit_code == 2
    assert "--samples must be >= 1, got 0." in result.output
