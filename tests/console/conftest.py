"""A real ``cfd serve`` on loopback and Debian's Chromium driven by Playwright; a failing test leaves
a screenshot of its page in ``test-artifacts/`` (or ``$CFD_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.service.helpers import Server, auth, make_keys, photo_files
from tests.synthetic import product_photo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("CFD_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def _require_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package"
    else:
        missing = None if Path(CHROMIUM).exists() else "Chromium (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the console tests need {missing}; .ci/run installs it")
        pytest.skip(f"the console tests need {missing}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A running service with two brands of four references each, and keys for every role."""
    _require_browser()
    data_dir = tmp_path_factory.mktemp("console") / "var"
    keys = make_keys(data_dir)
    server = Server(data_dir).start()
    for brand in ("acme", "zenit"):
        response = httpx.post(f"{server.url}/v1/brands/{brand}/references", headers=auth(keys["admin"]),
                              files=photo_files(*(product_photo(brand, i) for i in range(4))), timeout=60)
        assert response.status_code == 201
    yield server, keys
    server.stop()


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        item.report_call = outcome.get_result()


def sign_in(page, server, key: str) -> None:
    page.goto(f"{server.url}/console")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Main").wait_for()
