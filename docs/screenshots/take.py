"""Screenshots of the console, taken in Debian's Chromium against a real ``cfd serve``.

    python docs/screenshots/take.py --data ../shared/datasets/grocery-store [--out docs/screenshots]

Three grocery-store brands get their references; a genuine photo and a lookalike are checked
against one of them; then each view is captured at 1280 px, and the check view on a 390 px phone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.service.helpers import Server, auth, make_keys  # noqa: E402

BRANDS = ("arla-medium-fat-milk", "oatly-oat-milk", "tropicana-apple-juice")


def _files(paths: list[Path]) -> list:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        data_dir = Path(workdir) / "var"
        keys = make_keys(data_dir, brands=BRANDS)
        server = Server(data_dir).start()
        try:
            admin = auth(keys["admin"])
            for brand in BRANDS:
                refs = sorted((args.data / brand / "references").iterdir())
                httpx.post(f"{server.url}/v1/brands/{brand}/references", headers=admin, files=_files(refs), timeout=120)
            brand = BRANDS[0]
            genuine = sorted((args.data / brand / "genuine").iterdir())[0]
            lookalike = sorted((args.data / brand / "counterfeit").rglob("*.jpg"))[0]
            for photo in (lookalike, sorted((args.data / brand / "counterfeit").rglob("*.jpg"))[5]):
                httpx.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]), files=_files([photo]),
                           data={"brand": brand}, timeout=60)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                                     args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(f"{server.url}/console")
                page.screenshot(path=str(args.out / "1-sign-in.png"))
                page.get_by_label("API key").fill(keys["admin"])
                page.get_by_role("button", name="Sign in").click()
                page.locator("tbody tr").first.wait_for()
                page.screenshot(path=str(args.out / "2-brands.png"))
                page.get_by_role("link", name=brand).click()
                page.wait_for_function("() => [...document.querySelectorAll('#gallery img')].every(i => i.naturalWidth > 0)")
                page.screenshot(path=str(args.out / "3-gallery.png"), full_page=True)
                page.get_by_role("link", name="Check a listing").click()
                page.set_input_files("#check-files", [str(genuine)])
                page.select_option("#check-brand", brand)
                page.get_by_role("button", name="Check", exact=True).click()
                page.locator("#result .verdict").wait_for()
                heatmap = page.get_by_label("show where it differs (heatmap)")
                if heatmap.count():
                    heatmap.check()
                    page.get_by_alt_text("heatmap of listing photo 0").wait_for()
                page.wait_for_function("() => [...document.querySelectorAll('#result img')].every(i => i.naturalWidth > 0)")
                page.screenshot(path=str(args.out / "4-check.png"), full_page=True)
                page.get_by_role("link", name="Review queue").click()
                page.locator("#queue article").first.wait_for()
                page.locator("#queue article").first.focus()
                page.screenshot(path=str(args.out / "5-review-queue.png"), full_page=True)
                page.keyboard.press("c")
                page.get_by_role("link", name="Dashboard").click()
                page.locator("#outcomes").wait_for()
                page.select_option("#dash-brand", brand)
                page.locator("svg.chart rect").first.wait_for()
                page.screenshot(path=str(args.out / "6-dashboard.png"), full_page=True)
                phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
                phone.goto(f"{server.url}/console")
                phone.get_by_label("API key").fill(keys["brand"])
                phone.get_by_role("button", name="Sign in").click()
                phone.locator("tbody tr").first.wait_for()
                phone.screenshot(path=str(args.out / "7-phone-brand-key.png"), full_page=True)
                browser.close()
        finally:
            server.stop()
    print(f"wrote the screenshots to {args.out}")


if __name__ == "__main__":
    main()
