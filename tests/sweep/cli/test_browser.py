"""The two pages users look at, in a real browser (Debian's Chromium, headless, driven by
Playwright from pip; no browser download): the offline report and `sweep ui`."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.helpers import run_spec, spec_text, write_idx_dataset
from tests.servers import sweep_ui

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
EPOCHS = 3


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("browser")
    data = write_idx_dataset(folder / "blobs", n_train=400, n_test=100)
    text = spec_text("web", data, lr="{ values = [0.03, 0.3, 1000.0] }",
                     reg="{ values = [0.0, 1.0] }", batch="[16]", epochs=EPOCHS,
                     side_by_side=6)  # fmt: skip
    (folder / "web.toml").write_text(text)
    outcome = run_spec(text, folder / "home", str(folder / "web.toml"))
    return folder / "home", outcome


def watch(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_the_offline_report_loads_every_image_sorts_and_fits_a_phone(browser, swept) -> None:
    _, outcome = swept
    index = outcome.report_dir / "index.html"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = watch(page)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth])"
    )
    assert len(images) >= 7  # heatmap, templates, gallery, curves, confusion, predictions, ...
    assert all(width and width > 100 for _, width in images), images
    assert errors == []
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page.inner_text("body"))

    def column(n: int) -> list[str]:
        cells = f"table.trials tbody tr td:nth-child({n})"
        return page.eval_on_selector_all(cells, "els => els.map(e => e.textContent.trim())")

    page.click("table.trials th:has-text('reg')")  # ascending, as numbers
    regs = [float(v) for v in column(4)]
    assert regs == sorted(regs)
    page.click("table.trials th:has-text('reg')")  # again: descending
    assert [float(v) for v in column(4)] == sorted(regs, reverse=True)
    page.click("table.trials th:has-text('val acc')")  # best first
    values = [v for v in column(6) if v]
    assert [float(v) for v in values] == sorted((float(v) for v in values), reverse=True)
    assert column(6)[-1] == ""  # trials without a value (diverged) sort last
    page.click("table.trials th:has-text('val acc')")  # again: worst first
    values = [v for v in column(6) if v]
    assert [float(v) for v in values] == sorted(float(v) for v in values)
    assert column(6)[-1] == ""
    # Each run id links to its run in the MLflow UI's model-training view.
    links = page.eval_on_selector_all("table.trials a", "els => els.map(e => e.href)")
    assert len(links) == 6
    assert all(
        re.fullmatch(r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}"
                     r"\?workflowType=machine_learning", link)
        for link in links
    ), links  # fmt: skip
    page.close()
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(index.as_uri())
    phone.wait_for_load_state("load")
    # Nothing makes the page wider than the phone (the tables scroll inside their boxes).
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(outcome.report_dir.parent / "phone.png"), full_page=True)
    phone.close()


@pytest.fixture(scope="module")
def ui(swept):
    """One `sweep ui` on the swept home: its URL and the study's printed link."""
    home, _ = swept
    with sweep_ui(home) as (base, server):
        assert server.stdout is not None
        server.stdout.readline()  # "MLflow UI: ..."
        link = server.stdout.readline().split(": ", 1)[1].strip()
        yield base, link


def test_sweep_ui_lands_on_the_studys_trials_one_row_each_with_live_curves(
    browser, swept, ui
) -> None:
    home, _ = swept
    base, link = ui
    page = browser.new_page(viewport={"width": 2400, "height": 1000})  # every column drawn
    errors = watch(page)
    page.goto(link)
    page.wait_for_load_state("load")
    page.wait_for_selector("text=6 matching runs", timeout=60_000)
    names = set(re.findall(r"trial \d+: lr=", page.inner_text("body")))
    assert len(names) == 6  # one row per trial, the study's own run left out
    assert "Model training" in page.inner_text("body")
    shown = page.inner_text("body")
    assert "blobs train" in shown and "web.toml" in shown, shown  # Dataset, Source columns
    headers = set(page.locator("[role=columnheader]").all_inner_texts())
    assert {"val_accuracy", "learning_rate", "reg", "batch_size", "Models"} <= headers, headers
    page.screenshot(path=str(home / "ui-runs.png"))
    # (the UI probes optional endpoints; and Chromium reports a layout that settles over
    # two frames, as the Dataset column's chips do, as a "ResizeObserver loop" error)
    assert not [e for e in errors if "404" not in e and "ResizeObserver loop" not in e]
    page.close()
    # What each trial's val_accuracy chart draws: one point per epoch it trained.
    experiment = re.search(r"experiments/(\d+)", link).group(1)
    body = json.dumps({"experiment_ids": [experiment],
                       "filter": "tags.`softsweep.role` = 'trial'"}).encode()  # fmt: skip
    search = urllib.request.Request(f"{base}/ajax-api/2.0/mlflow/runs/search", data=body,
                                    headers={"Content-Type": "application/json"})  # fmt: skip
    runs = json.loads(urllib.request.urlopen(search).read())["runs"]
    assert len(runs) == 6
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        url = (f"{base}/ajax-api/2.0/mlflow/metrics/get-history?run_id="
               f"{run['info']['run_id']}&metric_key=val_accuracy")  # fmt: skip
        points = json.loads(urllib.request.urlopen(url).read()).get("metrics", [])
        assert sorted(p["step"] for p in points) == list(
            range(1, int(tags["softsweep.epochs_run"]) + 1)
        )


def test_other_ways_into_the_ui_need_one_click_each_which_the_browser_remembers(
    browser, swept, ui
) -> None:
    """MLflow 3.17 opens its root URL, and an experiment clicked there, in its GenAI view
    whatever the experiment is (a browser's choice, kept in its local storage; nothing a
    server can set). One click on "Model training" changes that for good; and "Override
    saved view" on the printed link keeps the study's columns for every later visit."""
    home, _ = swept
    base, link = ui
    context = browser.new_context(viewport={"width": 2400, "height": 1000})
    page = context.new_page()
    page.goto(base)
    page.get_by_text("web", exact=True).first.click()
    # GenAI's experiment overview: its tabs, and a sidebar that calls the runs "Training runs"
    # (a hash route: no page load to wait for, so wait for what it draws)
    page.wait_for_selector("text=Tool calls", timeout=60_000)
    genai = page.inner_text("body")
    assert "Training runs" in genai and "matching runs" not in genai  # no runs table
    page.screenshot(path=str(home / "ui-genai.png"))
    page.goto(base)
    page.get_by_text("Model training", exact=True).first.click()  # the one click
    page.get_by_text("web", exact=True).first.click()
    page.wait_for_selector("text=matching runs", timeout=60_000)
    page.goto(link)
    page.get_by_role("button", name="Override saved view").click()
    again = context.new_page()
    again.goto(base)
    again.get_by_text("web", exact=True).first.click()
    again.wait_for_selector("text=matching runs", timeout=60_000)
    headers = set(again.locator("[role=columnheader]").all_inner_texts())
    assert {"val_accuracy", "learning_rate", "reg", "batch_size"} <= headers, headers
    assert "6 matching runs" in again.inner_text("body")  # the trials only
    again.get_by_text(re.compile(r"^trial 0: lr=")).first.click()  # a run, from the table
    again.wait_for_selector("text=Model metrics", timeout=60_000)  # its training layout
    assert "Evaluations" not in again.inner_text("body")
    context.close()
