"""The real offline tagger and text encoder (packaged weights, loaded once for this module)."""

from __future__ import annotations

import pytest
import skimage.data
import torch
import torch.nn.functional as F

from linearsr_cli.tag.encoder import MAX_TOKENS, TAG_DIM
from linearsr_cli.tag.guidance import TagConfig, TagGuidance
from linearsr_cli.tag.tagger import visual_token
from linearsr_cli.tag.training import TrainingTags
from tests.util import random_model, tiny_model_config


def rgb(name: str) -> torch.Tensor:
    """An skimage sample as (3, h, w) float32 in [0, 1]."""
    return torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float() / 255.0


def downscale4(img: torch.Tensor) -> torch.Tensor:
    return F.interpolate(img[None], scale_factor=0.25, mode="bicubic", antialias=True)[0].clamp(0, 1)


@pytest.fixture(scope="module")
def guide() -> TagGuidance:
    g = TagGuidance(TagConfig(), torch.device("cpu"))
    _ = g.tagger, g.encoder  # load once for the module
    return g


@pytest.mark.parametrize("name, wanted", [("chelsea", ("cat",)), ("coffee", ("cup", "espresso"))])
def test_tagger_finds_the_object_also_at_quarter_size(guide, name, wanted) -> None:
    full = rgb(name)
    small = downscale4(full)
    assert small.shape[-1] < 160  # a real LR image, tagged at its own size
    for img in (full, small):
        res = guide.resolve(None, img)
        assert res.source == "tagger"
        assert any(w in tag for tag in res.tags for w in wanted), res
        assert len(res.scores) == len(res.tags) and all(s >= 0.1 for s in res.scores)
        assert list(res.scores) == sorted(res.scores, reverse=True)


def test_tiny_and_odd_inputs(guide) -> None:
    for shape in [(3, 1, 1), (3, 5, 300), (3, 224, 224)]:
        res = guide.resolve(None, torch.rand(shape))
        assert res.source == "tagger" and len(res.tags) <= 5
    with pytest.raises(ValueError, match=r"\(3, h, w\)"):
        guide.resolve(None, torch.rand(1, 3, 8, 8))


def test_top_k_and_threshold(guide) -> None:
    probs = guide.tagger.logits(rgb("chelsea")[None]).softmax(-1)[0]
    assert torch.allclose(probs.sum(), torch.tensor(1.0), atol=1e-4)
    loose = TagGuidance(TagConfig(top_k=3, threshold=0.0), torch.device("cpu"))
    loose._tagger = guide.tagger.__class__(guide.tagger.net, guide.device, 3, 0.0)
    res = loose.resolve(None, rgb("chelsea"))
    assert len(res.tags) == 3  # threshold 0: exactly top_k
    strict = guide.tagger.__class__(guide.tagger.net, guide.device, 5, 0.999)
    assert strict.predict(rgb("chelsea")[None]) == [[]]  # nothing that sure -> null token


def test_tagger_batch_matches_single(guide) -> None:
    a = downscale4(rgb("chelsea"))
    b = downscale4(rgb("coffee"))[:, : a.shape[1], : a.shape[2]]
    both = guide.tagger.predict(torch.stack([a, b]))
    singles = [guide.tagger.predict(a[None])[0], guide.tagger.predict(b[None])[0]]
    for batched, single in zip(both, singles, strict=True):
        assert [label for label, _ in batched] == [label for label, _ in single]
        assert all(abs(p - q) < 1e-4 for (_, p), (_, q) in zip(batched, single, strict=True))


def test_encoder_shapes_padding_and_mask(guide) -> None:
    states, mask = guide.encoder.encode_batch([["cat", "grass"], [], ["cup"]])
    assert states.shape[0] == 3 and states.shape[2] == TAG_DIM and states.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.shape == states.shape[:2]
    assert mask[0].all() and not mask[1].any() and 0 < int(mask[2].sum()) < int(mask[0].sum())
    assert torch.all(states[1] == 0) and torch.all(states[2][~mask[2]] == 0)
    alone, alone_mask = guide.encoder.encode_batch([["cup"]])
    n = int(alone_mask.sum())
    assert torch.allclose(alone[0, :n], states[2, :n], atol=1e-4)  # padding does not leak
    long_states, long_mask = guide.encoder.encode_batch([[f"tag number {i}" for i in range(40)]])
    assert long_states.shape[1] == MAX_TOKENS and long_mask.all()
    empty_states, empty_mask = guide.encoder.encode_batch([[], []])
    assert empty_states.shape == (2, 1, TAG_DIM) and not empty_mask.any()


def test_encoder_meaning(guide) -> None:
    """Similar tags give closer token states than unrelated ones (mean over real tokens)."""

    def vec(tags):
        s, m = guide.encoder.encode_batch([tags])
        return (s[0][m[0]]).mean(0)

    cat, kitten, truck = vec(["tabby cat"]), vec(["kitten"]), vec(["fire truck"])
    cos = torch.nn.functional.cosine_similarity
    assert cos(cat, kitten, dim=0) > cos(cat, truck, dim=0)


def test_guidance_encode_feeds_the_model(guide) -> None:
    states, mask = guide.encode(["cat", "grass"])
    assert states.shape[0] == 1 and states.shape[2] == TAG_DIM and mask.shape == states.shape[:2]
    assert guide.encode([]) == (None, None)
    cfg = tiny_model_config()
    model = random_model(cfg)
    lr = torch.rand(1, 3, 8, 8)
    x_t = torch.randn(1, 3, 8 * cfg.scale, 8 * cfg.scale)
    with torch.no_grad():
        guided = model(x_t, 1.0, lr, states, mask)
        null = model(x_t, 1.0, lr, None, None)
        masked_out = model(x_t, 1.0, lr, states, torch.zeros_like(mask))
    assert guided.shape == x_t.shape and not torch.allclose(guided, null)
    assert torch.allclose(masked_out, null, atol=1e-5)  # an all-False mask == the null token


def test_visual_token(guide) -> None:
    feats = guide.tagger.features(torch.stack([downscale4(rgb("chelsea")), downscale4(rgb("chelsea"))]))
    assert feats.shape == (2, 1280)
    tok, mask = visual_token(feats)
    assert tok.shape == (2, 1, TAG_DIM) and mask.shape == (2, 1) and mask.all()
    assert torch.allclose(tok, visual_token(feats)[0])  # the projection is fixed
    assert abs(float(tok.std()) - 0.5) < 0.05


def test_training_tags(guide) -> None:
    crops = torch.stack([downscale4(rgb("chelsea"))[:, :64, :64], downscale4(rgb("coffee"))[:, :64, :64]])
    tt = TrainingTags()
    tt.guidance._tagger, tt.guidance._encoder = guide.tagger, guide.encoder
    lists = tt.tags_for_training(crops)
    assert len(lists) == 2 and all(isinstance(t, str) for tags in lists for t in tags)
    states, mask = tt.encode(lists)
    assert states.shape[:2] == mask.shape and states.shape[0] == 2
    tok, vmask = tt.visual_batch(crops, keep=torch.tensor([True, False]))
    assert tok.shape == (2, 1, TAG_DIM) and vmask.tolist() == [[True], [False]]
