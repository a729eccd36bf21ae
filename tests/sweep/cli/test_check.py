from __future__ import annotations

import math
import re
from pathlib import Path

from click.testing import CliRunner

from sweep.cli import main
from tests.helpers import spec_text


def test_check_prints_the_course_sanity_checks(idx_folder: Path) -> None:
    args = ["check", "--dataset", str(idx_folder), "--samples", "50", "--train-samples", "100"]
    result = CliRunner().invoke(main, [*args, "--repeats", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("tiny: 50 samples x 31 features (bias included), 3 classes")
    assert "BLAS threads: " in lines[0]
    # Weights near 0 give every class 1/3: the initial loss is -log(1/3) = 1.0986.
    initial = lines[3].split()
    assert initial[:2] == ["initial", "loss"] and initial[-1] == "ok"
    assert abs(float(initial[2]) - math.log(3)) < 0.01
    assert "expected -log(1/3) = 1.0986" in lines[3]
    naive = next(line for line in lines if line.startswith("naive (loops)")).split()
    vectorized = next(line for line in lines if line.startswith("vectorized")).split()
    assert naive[2] == vectorized[1]  # the same loss to 10 decimals
    assert "(best of 3;" in " ".join(naive) and "(best of 15;" in " ".join(vectorized)
    start = lines.index(
        "gradient check (centred differences, h = 1e-5), the first entries checked:"
    )
    entries = lines[start + 3 : start + 8]
    for entry in entries:  # W[row, col]  numerical  analytic  rel. error
        cells = entry.split()
        assert cells[0].startswith("W[") and float(cells[-1]) < 1e-5
        assert abs(float(cells[2]) - float(cells[3])) < 1e-6
    assert lines[start + 8].startswith("max rel. error over the 40 entries checked: ")
    assert float(lines[start + 8].split()[-1]) < 1e-5
    loop = next(line for line in lines if line.startswith("per-sample loop")).split()
    matrix = next(line for line in lines if line.startswith("matrix (engine)")).split()
    assert loop[-1] == matrix[-1]  # the same model: the same validation accuracy
    assert lines[-1].startswith("the matrix kernel is ")


def test_check_unknown_dataset_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["check", "--dataset", "imagenet"])
    assert result.exit_code == 2
    assert "error: Unknown dataset 'imagenet'. Known datasets:" in result.output
    assert "Traceback" not in result.output


def test_check_bad_sample_count() -> None:
    result = CliRunner().invoke(main, ["check", "--samples", "0"])
    assert result.exit_code == 2
    assert "--samples must be >= 1, got 0." in result.output


def test_check_at_a_large_reg_compares_the_data_loss_and_checks_the_l2_gradient(
    idx_folder: Path,
) -> None:
    """At reg 50 the L2 term of the starting weights is visible in the total loss: the check
    compares the data loss with -log(1/C), and says what it took off."""
    args = ["check", "--dataset", str(idx_folder), "--samples", "50", "--train-samples", "0"]
    result = CliRunner().invoke(main, [*args, "--repeats", "1", "--reg", "50"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    initial = lines[3].split()
    assert initial[-1] == "ok" and abs(float(initial[2]) - math.log(3)) < 0.01
    found = re.fullmatch(r"  \(the data loss: the total ([\d.]+) minus the L2 term "
                         r"reg \* sum\(W\*\*2\) = ([\d.e-]+)\)", lines[4])  # fmt: skip
    assert found is not None, lines[4]
    total, l2 = float(found.group(1)), float(found.group(2))
    assert l2 > 0.001
    assert abs(total - l2 - float(initial[2])) < 1e-4
    l2_check = next(line for line in lines if line.startswith("the same entries at reg=50"))
    assert float(l2_check.split()[-1]) < 1e-5


def test_check_of_a_study_file_uses_its_split_and_preprocessing(
    idx_folder: Path, tmp_path: Path
) -> None:
    """The main job trains on standardized pixels: checked through its study file, the losses
    are those of its features, not of pixels / 255."""
    study = tmp_path / "std.toml"
    text = spec_text("std", idx_folder).replace(
        "val_size = 80", "val_size = 60\ncenter = true\nstandardize = true"
    )
    study.write_text(text)
    args = ["--samples", "50", "--train-samples", "0", "--repeats", "1"]
    checked = CliRunner().invoke(main, ["check", str(study), *args])
    plain = CliRunner().invoke(main, ["check", "--dataset", str(idx_folder), *args])
    assert checked.exit_code == plain.exit_code == 0, checked.output + plain.output
    lines = checked.output.splitlines()
    assert lines[1] == (
        f"features: standardized (training mean and std), as study 'std' trains ({study})"
    )
    assert plain.output.splitlines()[1].startswith("features: pixels / 255")
    assert lines[3].split()[-1] == "ok"  # -log(1/3) at the start, whatever the scaling

    def loss(output: str) -> str:
        return next(line for line in output.splitlines() if line.startswith("vectorized")).split()[
            1
        ]

    assert loss(checked.output) != loss(plain.output)  # other features, another loss


def test_check_of_a_missing_study_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output
