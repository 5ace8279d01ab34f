from __future__ import annotations

from dataclasses import replace

import numpy as np

from tests.synthetic import product_image


def test_embeddings_are_l2_normalised(embedder):
    embeddings, logits, patches = embedder.embed([product_image("acme", i) for i in range(3)])
    assert embeddings.shape == (3, embedder.embedding_dim)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert logits is None and patches is None  # the zero-shot model has no counterfeit head or patch head


def test_batching_does_not_change_embeddings(zero_shot):
    images = [product_image("zenit", i) for i in range(5)]
    one_by_one = np.concatenate([zero_shot.embedder(batch_size=1).embed([im]).vectors for im in images])
    batched = zero_shot.embedder(batch_size=4).embed(images).vectors
    np.testing.assert_allclose(one_by_one, batched, atol=1e-4)


def test_same_brand_is_closer_than_other_brand(embedder):
    a = embedder.embed([product_image("acme", 1), product_image("acme", 2)]).vectors
    z = embedder.embed([product_image("zenit", 1)]).vectors
    assert float(a[0] @ a[1]) > float(a[0] @ z[0]) + 0.05


def test_bf16_keeps_embeddings_close_to_fp32(zero_shot):
    images = [product_image(b, i) for b in ("acme", "zenit", "orbit") for i in range(2)]
    fp32 = replace(zero_shot, precision="fp32").embedder().embed(images).vectors
    bf16 = replace(zero_shot, precision="bf16").embedder().embed(images).vectors
    cosine = np.sum(fp32 * bf16, axis=1)
    assert cosine.min() > 0.99
    # and the ranking of neighbours survives
    assert np.array_equal(np.argsort(-(fp32 @ fp32.T), axis=1)[:, 1], np.argsort(-(bf16 @ bf16.T), axis=1)[:, 1])


def test_a_frozen_backbone_in_pieces_matches_one_pass(zero_shot):
    import torch

    from detector.embedder import FROZEN_CHUNK

    images = [product_image(b, i) for b in ("acme", "zenit", "orbit") for i in range(FROZEN_CHUNK // 2)]
    batch = zero_shot.embedder().preprocess(images)
    with torch.no_grad():
        pieces, _, _ = zero_shot.net(batch)  # more images than one piece: run in pieces
        whole = torch.nn.functional.normalize(zero_shot.net.backbone(batch), dim=-1)
    assert len(batch) > FROZEN_CHUNK
    torch.testing.assert_close(pieces, whole, atol=1e-4, rtol=1e-4)
