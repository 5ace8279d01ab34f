"""Stored checks, decisions and what they feed: known counterfeits, per-brand thresholds, re-scoring,
retention and export (the library; the HTTP side is in tests/service/test_review_api.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detector import thresholds
from detector.brand_calibration import BrandCalibrator, IndexWithout
from detector.checks import CheckFilter, Decision
from detector.embedder import Embeddings
from detector.errors import InvalidInputError, NotFoundError
from detector.export import export_decisions
from detector.evaluation.dataset import load_dataset
from detector.gallery import UploadFile
from detector.rescore import rescore_brand
from tests.alignment_scenes import listing_photo, studio_product
from tests.synthetic import encode, product_photo


@pytest.fixture
def database(engine_database):
    """Every test here runs on SQLite and on PostgreSQL."""
    return engine_database


def _photo(brand: str, seed: int) -> UploadFile:
    return UploadFile(f"{brand}-{seed}.png", product_photo(brand, seed))


def _reencoded(data: bytes, scale: float = 0.8, quality: int = 80) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def test_a_check_is_on_record_with_what_rescoring_needs(detector):
    result = detector.check([_photo("acme", 100), _photo("acme", 101)], brand="acme", listing_id="L1", key_id="k1")
    record = detector.gallery.checks.get(result.check_id)
    assert record["result"] == result.model_dump() and record["key_id"] == "k1" and record["listing_id"] == "L1"
    assert record["gallery_version"] == detector.gallery.store.gallery_version() and record["decision"] is None
    photos = detector.gallery.checks.photos([result.check_id])[result.check_id]
    assert [p.index for p in photos] == [0, 1]
    assert detector.gallery.checks.photo_bytes(result.check_id, 1) == product_photo("acme", 101)
    assert photos[0].embedding.shape == (detector.embedder.embedding_dim,)


def test_listing_filters_and_cursor_pages(detector):
    ids = [detector.check([_photo(b, 110 + i)], brand="acme").check_id for i, b in enumerate(["acme", "zenit", "acme"])]
    checks = detector.gallery.checks
    checks.decide(ids[0], Decision("genuine"), actor="reviewer")
    seen, cursor = [], None
    while True:
        page, cursor = checks.list(CheckFilter(brand="acme"), limit=1, before=cursor)
        seen += [c["id"] for c in page]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert [c["id"] for c in checks.list(CheckFilter(decision="undecided"))[0]] == [ids[2], ids[1]]
    assert [c["id"] for c in checks.list(CheckFilter(decision="genuine"))[0]] == [ids[0]]
    assert checks.list(CheckFilter(since="2999-01-01T00:00:00Z"))[0] == []
    assert len(checks.list(CheckFilter(until="2999-01-01"))[0]) == 3
    with pytest.raises(InvalidInputError):
        checks.list(CheckFilter(since="yesterday"))


def test_decisions_are_append_only_and_the_latest_counts(detector):
    check_id = detector.check([_photo("acme", 120)], brand="acme").check_id
    checks = detector.gallery.checks
    checks.decide(check_id, Decision("counterfeit", kind="logo", note="wrong lid"), actor="a")
    checks.decide(check_id, Decision("genuine"), actor="b")
    record = checks.get(check_id)
    assert record["decision"] == "genuine"
    assert [(d["decision"], d["kind"], d["key_id"]) for d in record["decisions"]] == [("counterfeit", "logo", "a"), ("genuine", None, "b")]
    for bad in (Decision("maybe"), Decision("genuine", kind="logo"), Decision("counterfeit", kind="Bad Kind"),
                Decision("genuine", note="x" * 5000)):
        with pytest.raises(InvalidInputError):
            checks.decide(check_id, bad, actor="a")
    with pytest.raises(NotFoundError):
        checks.decide(10**9, Decision("genuine"), actor="a")
    assert len(checks.get(check_id)["decisions"]) == 2  # the refused ones left no trace


def _shot(seed: int) -> bytes:
    """A detailed product photographed at an angle: shots with other seeds are other photos of it."""
    return encode(listing_photo(studio_product(0), seed)[0], "PNG")


def test_a_confirmed_counterfeit_flags_its_near_duplicates(detector):
    original = _shot(1)
    first = detector.check([UploadFile("a.png", original)], brand="acme")
    assert all("known_counterfeit" not in image.flags for image in first.images)
    detector.gallery.checks.decide(first.check_id, Decision("counterfeit"), actor="reviewer")

    copy = detector.check([UploadFile("b.jpg", _reencoded(original)), UploadFile("c.png", _shot(2))], brand="acme")
    assert copy.verdict == "counterfeit"
    assert copy.images[0].flags[-1] == "known_counterfeit"
    assert "known_counterfeit" not in copy.images[1].flags  # another photo of the same product is not a duplicate
    assert copy.images[0].known_counterfeit.check_id == first.check_id
    assert copy.images[0].known_counterfeit.similarity >= 0.92 and copy.images[0].known_counterfeit.hash_distance <= 10
    assert any(f"check {first.check_id}" in reason for reason in copy.reasons)

    detector.gallery.checks.decide(first.check_id, Decision("genuine"), actor="reviewer")  # the reviewer changed their mind
    again = detector.check([UploadFile("d.jpg", _reencoded(original))], brand="acme")
    assert "known_counterfeit" not in again.images[0].flags


def test_genuine_examples_are_stored_decided(detector):
    result = detector.check([_photo("acme", 150)], brand="acme", key_id="brand-key", genuine_example=True)
    record = detector.gallery.checks.get(result.check_id)
    assert record["source"] == "example" and record["decision"] == "genuine"
    assert record["decisions"][0]["key_id"] == "brand-key"


def test_per_brand_thresholds_come_from_decided_genuine_checks(detector):
    calibrator = BrandCalibrator(detector)
    with pytest.raises(InvalidInputError, match="too little genuine evidence"):
        calibrator.calibrate("acme", actor="admin")  # 4 references, no decisions
    for seed in range(160, 170):
        detector.check([_photo("acme", seed)], brand="acme", genuine_example=True)
    report = calibrator.calibrate("acme", actor="admin")
    assert report["calibration"]["scope"] == "brand" and report["calibration"]["source"] == "decisions"
    assert report["calibration"]["genuine_photos"] == 10
    fitted = detector.thresholds("acme")
    assert fitted.scope == "brand" and fitted.suspicious <= fitted.counterfeit
    result = detector.check([_photo("acme", 171)], brand="acme")
    assert result.calibration.scope == "brand" and result.calibration.suspicious_threshold == pytest.approx(fitted.suspicious, abs=1e-6)
    assert result.verdict == fitted.verdict(result.counterfeit_score)
    assert detector.check([_photo("zenit", 171)], brand="zenit").calibration.scope == "model"  # other brands keep the model's
    # another model (or precision) does not use them
    assert thresholds.stored(detector.gallery.store, "acme", "another-model") is None


def test_leave_one_out_never_compares_a_reference_with_itself(detector):
    gallery = detector.gallery
    gallery.add_references("acme", [_photo("acme", s) for s in range(4, 12)])  # 12 references
    references = gallery.store.brand_embeddings("acme", model=gallery.model)
    vectors = np.stack([v for _, _, v in references])
    without = IndexWithout(gallery.index, "acme", {references[0][0]})
    hits = without.search_brand(vectors[:1], "acme", 3)[0]
    assert references[0][0] not in hits.ids and len(hits.ids) == 3 and hits.similarities[0] < 0.999
    assert without.brand_size("acme") == 11 and without.brand_size("zenit") == 4

    calibrator = BrandCalibrator(detector)
    scores = calibrator.leave_one_out_scores("acme")
    scorer = detector.scorer()
    with_itself = [e.counterfeit_score for e in scorer.evidence(Embeddings(vectors, None, None), "acme")]
    assert len(scores) == 12 and all(loo > own for loo, own in zip(scores, with_itself))
    report = calibrator.calibrate("acme", actor="admin")
    assert report["calibration"]["source"] == "leave-one-out" and report["calibration"]["genuine_photos"] == 12


def test_threshold_fitting_meets_its_target_out_of_sample():
    rng = np.random.default_rng(0)
    flagged, counterfeit = [], []
    for _ in range(200):  # brands with 15 genuine photos whose scores are logit-normal
        centre, spread = rng.normal(-1, 1), rng.uniform(0.3, 1.5)
        sample = 1 / (1 + np.exp(-(centre + spread * rng.standard_normal(15))))
        fresh = 1 / (1 + np.exp(-(centre + spread * rng.standard_normal(2000))))
        fitted, detail = thresholds.fit(sample, targets=(0.05, 0.01), source="test")
        assert detail["methods"] == {"suspicious": "prediction-interval", "counterfeit": "prediction-interval"}
        flagged.append(np.mean(fresh >= fitted.suspicious))
        counterfeit.append(np.mean(fresh >= fitted.counterfeit))
    assert 0.03 < np.mean(flagged) <= 0.06 and 0.004 < np.mean(counterfeit) <= 0.015
    with pytest.raises(InvalidInputError):
        thresholds.fit(np.full(5, 0.2), targets=(0.05, 0.01), source="test")


def test_many_genuine_photos_use_the_conformal_quantile():
    scores = np.linspace(0.0, 1.0, 1001)
    fitted, detail = thresholds.fit(scores, targets=(0.05, 0.01), source="test")
    assert detail["methods"]["suspicious"] == "conformal" and detail["methods"]["counterfeit"] == "conformal"
    assert np.mean(scores >= fitted.suspicious) <= 0.05 and np.mean(scores >= fitted.counterfeit) <= 0.01
    assert np.mean(scores >= fitted.suspicious) > 0.04


def test_rescoring_uses_stored_embeddings_and_reports_changes(detector, monkeypatch):
    listing = product_photo("zenit", 180)
    before = detector.check([UploadFile("l.png", listing)], brand="acme")
    assert before.verdict in ("suspicious", "counterfeit")
    detector.gallery.add_references("acme", [UploadFile("l.png", listing)])  # the brand now has this very photo

    def no_embedding(*_):
        raise AssertionError("a re-score must not embed photos again")

    monkeypatch.setattr(detector.embedder, "embed_tensor", no_embedding)
    report = rescore_brand(detector, "acme", actor="admin")
    assert report["rescored"] == 1 and report["skipped_other_model"] == 0
    assert report["changed"] == [{"check_id": before.check_id, "listing_id": None, "before": before.verdict,
                                  "after": "genuine", "score_before": before.counterfeit_score,
                                  "score_after": report["changed"][0]["score_after"]}]
    record = detector.gallery.checks.get(before.check_id)
    assert record["verdict"] == "genuine" and record["rescored_at"] and record["result"]["check_id"] == before.check_id
    assert rescore_brand(detector, "acme", actor="admin")["changed"] == []


def test_retention_prunes_old_undecided_checks_and_their_photos(detector):
    checks, store = detector.gallery.checks, detector.gallery.store
    old = detector.check([_photo("acme", 190)], brand="acme").check_id
    decided = detector.check([_photo("acme", 191)], brand="acme").check_id
    fresh = detector.check([_photo("acme", 192)], brand="acme").check_id
    checks.decide(decided, Decision("genuine"), actor="a")
    with store.transaction() as conn:  # age two of them
        conn.execute("UPDATE checks SET created_at = '2020-01-01T00:00:00.000Z' WHERE id IN (?, ?)", (old, decided))
    digest = checks.photos([old])[old][0].sha256
    assert checks.prune(older_than_days=30, actor="retention") == 1
    with pytest.raises(NotFoundError):
        checks.get(old)
    assert checks.get(decided)["decision"] == "genuine" and checks.get(fresh)
    assert digest not in detector.gallery.blobs.digests()


def test_export_writes_the_dataset_layout(detector, tmp_path):
    checks = detector.gallery.checks
    genuine = detector.check([_photo("acme", 200), _photo("acme", 201)], brand="acme").check_id
    fake = detector.check([_photo("zenit", 202)], brand="acme").check_id
    checks.decide(genuine, Decision("genuine"), actor="a")
    checks.decide(fake, Decision("counterfeit", kind="lookalike"), actor="a")
    summary = export_decisions(detector.gallery.store, detector.gallery.blobs, checks, tmp_path / "out")
    assert summary["genuine_photos"] == 2 and summary["counterfeit_photos"] == 1 and summary["references"] == 4
    dataset = load_dataset(tmp_path / "out")
    assert dataset.brands == ["acme"] and len(dataset.references["acme"]) == 4
    assert sorted((s.label, s.kind) for s in dataset.samples) == [(0, "genuine"), (0, "genuine"), (1, "lookalike")]
    assert (tmp_path / "out" / "acme" / "counterfeit" / "lookalike" / f"check-{fake}-0.png").read_bytes() == product_photo("zenit", 202)


def test_a_deleted_reference_keeps_the_bytes_a_stored_check_uses(detector):
    photo = _photo("acme", 210)
    ref = detector.gallery.add_references("acme", [photo])[0]
    detector.check([photo], brand="acme")
    detector.gallery.delete_reference("acme", ref.id)
    assert ref.sha256 in detector.gallery.blobs.digests()
    assert detector.gallery.remove_orphans() == 0 and ref.sha256 in detector.gallery.blobs.digests()



def test_webhook_deliveries_wait_in_the_outbox_until_a_receiver_answers(detector):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from detector import webhooks
    from detector.store import Store

    got: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/"
    receiver.server_close()  # nobody listens yet
    webhooks.create(detector.gallery.store, url=url, min_verdict="genuine", brand=None, actor="admin")
    check_id = detector.check([_photo("acme", 230)], brand="acme").check_id

    policy = webhooks.DeliveryPolicy(max_attempts=3, retry_base_s=0.0, timeout_s=2)
    store = Store(detector.gallery.store.location)  # another process's view: the outbox is in the database
    try:
        assert webhooks.Dispatcher(store, policy).deliver_due() == 1  # refused: stays pending
        assert store.query("SELECT state, attempts FROM webhook_deliveries")[0] == ("pending", 1)
        receiver = ThreadingHTTPServer(("127.0.0.1", receiver.server_address[1]), Receiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        store.query("UPDATE webhook_deliveries SET next_attempt_at = 0")  # its backoff has passed
        assert webhooks.Dispatcher(store, policy).deliver_due() == 1
        assert store.query("SELECT state, attempts FROM webhook_deliveries")[0] == ("delivered", 2)
        assert len(got) == 1 and b'"check_id":%d' % check_id in got[0]
        assert webhooks.Dispatcher(store, policy).deliver_due() == 0  # delivered once
    finally:
        receiver.shutdown()
        store.close()
