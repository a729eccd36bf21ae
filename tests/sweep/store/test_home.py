"""`Home`: one folder (or --storage / --tracking-uri) -> the two stores, the artifact root and the
report folder, once; and the passwords in store URLs, masked wherever softsweep shows a URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.store.home import Home, passwords, safe_url, scrub


def test_a_folder_is_the_embedded_stores_artifacts_and_reports(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "h")
    folder = (tmp_path / "h").resolve()
    assert folder.is_dir()  # created
    assert home.storage == f"sqlite:///{folder / 'optuna.db'}"
    assert home.tracking_uri == f"sqlite:///{folder / 'mlflow.db'}"
    assert home.embedded_storage and home.embedded_tracking
    assert home.artifact_root == folder / "mlartifacts"
    assert home.report_dir("s") == folder / "reports" / "s"
    assert home.ui() == ("http://127.0.0.1:5000", f"start it with: sweep ui --home {folder}")


def test_servers_replace_the_embedded_stores_and_the_folder_keeps_the_reports(
    tmp_path: Path,
) -> None:
    home = Home.resolve(
        tmp_path, storage="postgresql+psycopg2://u:secret@db/optuna",
        tracking_uri="http://u:pw@mlflow:5000",
    )  # fmt: skip
    assert not home.embedded_storage and not home.embedded_tracking
    assert home.artifact_root is None  # the server decides
    assert home.shown_storage == "postgresql+psycopg2://u:***@db/optuna"
    assert home.ui() == ("http://u:***@mlflow:5000", "")
    assert home.report_dir("s").parent.parent == tmp_path.resolve()
    # A database behind MLflow with no server in front: no UI to point at.
    assert Home.resolve(tmp_path, tracking_uri="postgresql+psycopg2://db/m").ui() == ("", "")
    # ... whose artifacts stay in the home, not in ./mlruns of the folder a command ran in.
    database = Home.resolve(tmp_path, tracking_uri="postgresql+psycopg2://db/m")
    assert database.artifact_root == tmp_path.resolve() / "mlartifacts"


def test_home_comes_from_the_environment_and_reading_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFTSWEEP_HOME", str(tmp_path / "env-home"))
    home = Home.resolve(create=False)
    assert home.folder == (tmp_path / "env-home").resolve()
    assert not home.folder.exists()


def test_a_file_is_not_a_home(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"--home must be a folder, got .*which is a file"):
        Home.resolve(tmp_path / "file")


def test_passwords_are_masked_in_urls_and_in_any_text_that_quotes_them() -> None:
    url = "postgresql+psycopg2://user:p%40ss@db:5432/optuna"
    assert safe_url(url) == "postgresql+psycopg2://user:***@db:5432/optuna"
    assert safe_url("sqlite:///x.db") == "sqlite:///x.db"
    # Quoted as given or decoded, by a driver's error message.
    assert passwords(url) == [":p%40ss@", ":p@ss@"]
    said = 'connection to "user:p@ss@db" failed; url user:p%40ss@db'
    assert scrub(said, url) == 'connection to "user:***@db" failed; url user:***@db'
    assert scrub("nothing to hide", None, "sqlite:///x") == "nothing to hide"


def test_a_home_shows_its_urls_masked(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path, storage="postgresql+psycopg2://u:s3cret@db/optuna",
                        tracking_uri="http://me:t0ken@mlflow:5000")  # fmt: skip
    assert "s3cret" not in repr(home) and "t0ken" not in repr(home)
    assert "postgresql+psycopg2://u:***@db/optuna" in repr(home)


@pytest.mark.parametrize("option", ["storage", "tracking_uri"])
def test_an_unencoded_at_in_a_password_is_refused_without_showing_it(
    tmp_path: Path, option: str
) -> None:
    url = "postgresql+psycopg2://u:pa@ss-w0rd@db/optuna"
    with pytest.raises(ValueError, match=r"more than one '@' before its host.*%40") as raised:
        Home.resolve(tmp_path, **{option: url})
    assert "ss-w0rd" not in str(raised.value) and "pa@" not in str(raised.value)
