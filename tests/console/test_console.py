"""The console in a real browser against a real ``cfd serve``: sign in, upload, check, review,
the dashboard, brand-key isolation, keyboard use, a phone-sized screen and the offline API page."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.alignment_scenes import listing_photo, studio_product
from tests.console.conftest import sign_in
from tests.service.helpers import auth, photo_files
from tests.synthetic import encode, product_photo


def _file(name: str, data: bytes, mime: str = "image/png") -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


def test_sign_in_upload_and_delete_references(page, served):
    server, keys = served
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    sign_in(page, server, keys["admin"])
    page.get_by_role("link", name="acme").click()
    gallery = page.locator("#gallery figure")
    gallery.first.wait_for()
    before = gallery.count()
    page.set_input_files("#upload-files", [_file("new.png", product_photo("acme", 40)),
                                            _file("broken.png", b"\x89PNG not really")])
    page.locator("#upload-results li").nth(1).wait_for()
    results = page.locator("#upload-results li").all_inner_texts()
    assert results[0] == "new.png: uploaded" and results[1].startswith("broken.png: ") and "uploaded" not in results[1]
    assert page.locator("#upload-progress").evaluate("bar => bar.value === bar.max")
    assert gallery.count() == before + 1
    # thumbnails are served by the app and loaded through the key-carrying fetch
    page.wait_for_function("() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth > 0)")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile(r"Delete reference \d+")).first.click()
    page.wait_for_function(f"() => document.querySelectorAll('#gallery figure').length === {before}")
    assert keys["admin"] not in " ".join(requests)  # the key never travels in a URL
    assert page.evaluate("() => localStorage.length") == 0


def test_check_a_listing_then_review_it_from_the_keyboard(page, served):
    server, keys = served
    sign_in(page, server, keys["admin"])
    page.get_by_role("link", name="Check a listing").click()
    page.set_input_files("#check-files", [_file("listing.png", product_photo("zenit", 60))])
    page.select_option("#check-brand", "acme")
    page.get_by_label("Listing id (optional)").fill("L-console")
    page.get_by_role("button", name="Check", exact=True).click()
    badge = page.locator("#result .verdict")
    badge.wait_for()
    assert badge.inner_text() in ("suspicious", "counterfeit")
    assert "looks like zenit, not acme" in page.locator("#reasons").inner_text()
    page.wait_for_function("() => [...document.querySelectorAll('#result .refs img')].some(i => i.naturalWidth > 0)")
    check_id = int(re.search(r"Check (\d+):", page.locator("#status").inner_text()).group(1))

    page.get_by_role("link", name="Review queue").click()
    item = page.locator(f"article[data-check='{check_id}']")
    item.wait_for()
    item.focus()
    page.keyboard.press("c")
    item.wait_for(state="detached")
    assert f"Check {check_id} decided counterfeit" in page.locator("#status").inner_text()
    record = httpx.get(f"{server.url}/v1/checks/{check_id}", headers=auth(keys["admin"]), timeout=30).json()
    assert record["decision"] == "counterfeit" and record["decisions"][0]["key_id"] == keys["admin"].split("_")[1]
    page.reload()  # a decided check has left the queue for good
    page.locator("#queue").wait_for()
    assert page.locator(f"article[data-check='{check_id}']").count() == 0


def test_the_heatmap_overlay_of_an_aligned_photo(page, served):
    server, keys = served
    httpx.post(f"{server.url}/v1/brands", headers=auth(keys["admin"]), json={"brand": "studio"}, timeout=30)
    httpx.post(f"{server.url}/v1/brands/studio/references", headers=auth(keys["admin"]), timeout=60,
               files=photo_files(encode(studio_product(0), "JPEG", quality=92)))
    sign_in(page, server, keys["admin"])
    page.get_by_role("link", name="Check a listing").click()
    page.set_input_files("#check-files", [_file("shot.jpg", encode(listing_photo(studio_product(0), 5)[0], "JPEG", quality=92), "image/jpeg")])
    page.select_option("#check-brand", "studio")
    page.get_by_role("button", name="Check", exact=True).click()
    page.get_by_label("show where it differs (heatmap)").check()
    page.get_by_alt_text("heatmap of listing photo 0").wait_for()
    page.wait_for_function("() => document.querySelector('img[alt=\"heatmap of listing photo 0\"]').naturalWidth === 480")


def test_the_dashboard_charts_checks_and_decisions(page, served):
    server, keys = served
    for seed in (70, 71):
        httpx.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]), files=photo_files(product_photo("acme", seed)),
                   data={"brand": "acme"}, timeout=60)
    sign_in(page, server, keys["brand"])
    page.get_by_role("link", name="Dashboard").click()
    page.locator("#outcomes").wait_for()
    assert page.locator("svg.chart rect").count() >= 1
    assert re.search(r"The (model's|brand's own): suspicious from 0\.\d{3}", page.locator("#thresholds").inner_text())
    genuine_row = page.locator("#outcomes tbody tr").first.inner_text()
    assert genuine_row.startswith("genuine")


def test_a_brand_key_sees_only_its_brand(page, served):
    server, keys = served
    zenit_check = httpx.post(f"{server.url}/v1/check", headers=auth(keys["pipeline"]), timeout=60,
                             files=photo_files(product_photo("acme", 80)), data={"brand": "zenit"}).json()
    sign_in(page, server, keys["brand"])
    assert page.locator("tbody tr").all_inner_texts()[0].startswith("acme") and page.locator("tbody tr").count() == 1
    page.get_by_role("link", name="Review queue").click()
    page.locator("#queue").wait_for()
    brands = page.locator("#queue-brand option").all_inner_texts()
    assert brands == ["acme"]
    assert page.locator(f"article[data-check='{zenit_check['check_id']}']").count() == 0
    page.goto(f"{server.url}/console#/brands/zenit")
    expect(page.get_by_role("alert")).to_contain_text("bound to brand 'acme'")
    assert page.get_by_role("button", name=re.compile("Delete reference")).count() == 0


def test_keyboard_only_sign_in_and_labels(page, served):
    server, keys = served
    page.goto(f"{server.url}/console")
    page.get_by_label("API key").wait_for()
    focused = []
    for _ in range(2):  # the skip link, then the key: nothing else before signing in
        page.keyboard.press("Tab")
        focused.append(page.evaluate("() => document.activeElement.id || document.activeElement.className"))
    assert focused == ["skip", "key"]
    page.keyboard.type(keys["pipeline"])
    page.keyboard.press("Enter")
    page.get_by_role("navigation", name="Main").wait_for()
    assert page.get_by_role("link", name="Review queue").is_hidden()  # pipeline keys do not review
    page.get_by_role("link", name="Check a listing").click()
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
    assert unlabelled == []
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_wrong_key_is_refused_with_a_message(page, served):
    server, keys = served
    page.goto(f"{server.url}/console")
    page.get_by_label("API key").fill(keys["revoked"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid or revoked")


def test_a_phone_sized_screen(browser, served):
    server, keys = served
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        sign_in(page, server, keys["admin"])
        page.get_by_role("link", name="Check a listing").click()
        page.locator("#check-files").wait_for(state="attached")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        assert page.get_by_role("button", name="Sign out").is_visible()
    finally:
        context.close()


def test_the_api_page_works_offline_with_a_bearer_scheme(page, served):
    server, _ = served
    origins = set()
    page.on("request", lambda r: origins.add(re.match(r"^[a-z]+://[^/]+", r.url).group(0)))
    page.goto(f"{server.url}/docs")
    page.get_by_role("button", name=re.compile("Authorize")).wait_for()
    assert origins == {server.url}  # no CDN
    home = page.goto(f"{server.url}/")
    assert home.status == 200 and page.get_by_role("link", name="Console").get_attribute("href") == "/console"


def test_photos_dropped_on_the_gallery_are_uploaded(page, served):
    server, keys = served
    sign_in(page, server, keys["brand"])
    page.get_by_role("link", name="acme").click()
    page.locator("#gallery figure").first.wait_for()
    before = page.locator("#gallery figure").count()
    dropped = page.evaluate_handle("""(photos) => {
        const transfer = new DataTransfer();
        photos.forEach(([name, bytes]) => transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'})));
        return transfer; }""", [[f"dropped-{i}.png", list(product_photo("acme", 50 + i))] for i in range(2)])
    page.dispatch_event("label.dropzone", "drop", {"dataTransfer": dropped})
    page.locator("#upload-results li").nth(1).wait_for()
    assert page.locator("#upload-results li").all_inner_texts() == ["dropped-0.png: uploaded", "dropped-1.png: uploaded"]
    page.wait_for_function(f"() => document.querySelectorAll('#gallery figure').length === {before + 2}")


def test_text_and_badges_keep_a_readable_contrast(page, served):
    """WCAG AA: at least 4.5:1 for the text the console draws on its backgrounds."""
    server, keys = served
    sign_in(page, server, keys["admin"])
    ratios = page.evaluate("""() => {
        const rgb = (css) => css.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
            .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
        const ratio = (a, b) => { const [x, y] = [lum(rgb(a)), lum(rgb(b))].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
        const probe = (cls) => { const el = document.createElement('span'); el.className = cls; el.textContent = 'x';
            document.body.append(el); const s = getComputedStyle(el); const r = ratio(s.color, s.backgroundColor); el.remove(); return r; };
        const page = getComputedStyle(document.body);
        return {badges: ['genuine', 'suspicious', 'counterfeit', 'unverifiable'].map((v) => probe('verdict ' + v)),
                link: ratio(getComputedStyle(document.querySelector('nav a')).color, page.backgroundColor),
                text: ratio(page.color, page.backgroundColor)};
    }""")
    assert min(ratios["badges"]) >= 4.5 and ratios["link"] >= 4.5 and ratios["text"] >= 4.5, ratios
