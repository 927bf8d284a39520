"""Tests of bayeslrp.metrics against hand-computed cases and a per-image reference."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeslrp import metrics as M
from bayeslrp.errors import BayesLRPError

# --------------------------------------------------------------------------- reference oracle
# A deliberately naive per-image implementation written from the definitions in SPEC §6,
# using Python's sorted() on (key, index) pairs: an independent oracle for the vectorised code.


def _ref_side(values, count, key, exclude=()):
    cands = [(key(v), -i) for i, v in enumerate(values) if i not in exclude]
    cands.sort(reverse=True)  # largest key first; for equal keys, lower index first
    return {-neg_i for _, neg_i in cands[:count]}


def _ref_select(values, k, mode, ties, counts=None):
    P = len(values)
    if mode == "abs":
        K = math.floor(k * P / 100 + 1e-9)
        if counts is None:
            counts = (min(K, sum(v != 0 for v in values)) if ties == "nonzero" else K,)
        return _ref_side(values, counts[0], abs), counts
    h = math.floor(k * P / 200 + 1e-9)
    if counts is None:
        if ties == "nonzero":
            counts = (min(h, sum(v > 0 for v in values)), min(h, sum(v < 0 for v in values)))
        else:
            counts = (h, h)
    neg = _ref_side(values, counts[1], lambda v: -v)
    pos = _ref_side(values, counts[0], lambda v: v, exclude=neg)
    return pos | neg, counts


def _ref_robustness(r, ra, k, mode, ties):
    A, counts = _ref_select(r, k, mode, ties)
    B, _ = _ref_select(ra, k, mode, ties, counts=counts)
    if not A:
        return 1.0 if all(v == 0 for v in ra) else 0.0
    return len(A & B) / len(A)


# --------------------------------------------------------------------------- hand cases


def test_topk_count_uses_floor():
    assert M.topk_count(784, 20) == 156          # 156.8
    assert M.topk_count(1024, 20) == 204         # 204.8
    assert M.topk_count(10, 25) == 2             # 2.5
    assert M.topk_count(1000, 0.3) == 3          # exact decimal, not 2.9999...
    assert M.topk_count(784, 100) == 784
    assert M.topk_count(784, 20, "signed") == 2 * 78  # floor(10 % of 784) = 78 per side
    assert M.topk_count(10, 30, "signed") == 2   # floor(1.5) per side


def test_abs_topk_ties_broken_by_lower_index():
    R = torch.tensor([[1.0, -1.0, 1.0, 1.0, 0.5, 0.0]])
    assert M.topk_indices(R, 50).tolist() == [[0, 1, 2]]
    assert M.topk_mask(R, 50).tolist() == [[True, True, True, False, False, False]]


def test_nonzero_mode_with_zero_background_hand_example():
    # 4x5 image, P = 20, k = 20 -> K = 4; the clean heatmap has only 3 non-zero pixels.
    R = torch.zeros(1, 4, 5)
    R[0, 1, 1], R[0, 1, 2], R[0, 2, 2] = 3.0, -2.0, 1.0           # flat 6, 7, 12
    Ra = torch.full((1, 4, 5), 0.05)                              # attacked background != 0
    Ra[0, 1, 1], Ra[0, 1, 2], Ra[0, 3, 4], Ra[0, 0, 0] = 2.0, 0.1, -4.0, 0.2  # flat 6, 7, 19, 0
    # A = {6, 7, 12} (nnz = 3 < K); B = top 3 of |Ra| = {19, 6, 0}; |A∩B| = 1 -> 1/3.
    res = M.lrp_robustness_details(R, Ra, k=20)
    assert res.nnz.tolist() == [3] and res.size.tolist() == [3] and res.count == 4
    assert res.robustness.tolist() == pytest.approx([1 / 3])
    assert M.topk_indices(R, 20).tolist() == [[6, 7, 12, -1]]
    # ties="index": A = {6, 7, 12, 0} (first zero pixel), B = {19, 6, 0, 7} -> 3/4.
    res_idx = M.lrp_robustness_details(R, Ra, k=20, ties="index")
    assert res_idx.size.tolist() == [4]
    assert res_idx.robustness.tolist() == pytest.approx([3 / 4])


def test_signed_mode_hand_example():
    R = torch.tensor([[0.0, 3, -5, 0, 1, 0, 0, 2, 0, -1]])   # P = 10, k = 40 -> h = 2
    assert M.topk_indices(R, 40, mode="signed").tolist() == [[1, 7, 2, 9]]
    assert M.topk_indices(R, 40, mode="signed", ties="index").tolist() == [[1, 7, 2, 9]]
    R2 = torch.tensor([[0.0, 3, -5, 0, 1, 0, 0, 2, 0, 0]])   # one negative only
    assert M.topk_indices(R2, 40, mode="signed").tolist() == [[1, 7, 2, -1]]
    # literal: the second most negative is the first zero pixel (index 0)
    assert M.topk_indices(R2, 40, mode="signed", ties="index").tolist() == [[1, 7, 2, 0]]
    Ra = torch.tensor([[0.0, -3, -5, 0, 1, 0, 0, 2, 4, 0]])
    # A = {1, 7 | 2}; B: 2 largest {8, 7}, 1 most negative {2} -> |A∩B| = 2 of 3
    assert M.lrp_robustness(R2, Ra, 40, mode="signed").tolist() == pytest.approx([2 / 3])


def test_signed_sides_are_disjoint_on_all_zero_heatmap():
    R = torch.zeros(1, 6)
    idx = M.topk_indices(R, 100, mode="signed", ties="index")
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3, 4, 5]
    assert M.topk_mask(R, 100, mode="signed", ties="index").all()


def test_all_zero_clean_heatmap_is_nan_free():
    R = torch.zeros(3, 2, 5)
    Ra = torch.zeros(3, 2, 5)
    Ra[1, 0, 3] = 0.5
    res = M.lrp_robustness_details(R, Ra, k=20)
    assert res.robustness.tolist() == [1.0, 0.0, 1.0]
    assert res.nnz.tolist() == [0, 0, 0] and res.size.tolist() == [0, 0, 0]
    # ties="index" never has an empty A: A = {0, 1}; B = {3, 0} for image 1 -> 1/2
    assert M.lrp_robustness(R, Ra, k=20, ties="index").tolist() == [1.0, 0.5, 1.0]


def test_shapes_hw_and_flat_agree():
    g = torch.Generator().manual_seed(0)
    R, Ra = torch.randn(4, 7, 9, generator=g), torch.randn(4, 7, 9, generator=g)
    a = M.lrp_robustness(R, Ra, 20)
    b = M.lrp_robustness(R.reshape(4, -1), Ra.reshape(4, -1), 20)
    assert torch.equal(a, b)
    assert M.topk_mask(R, 20).shape == R.shape


@pytest.mark.parametrize("bad_k", [0, -5, 100.5, math.nan, True, "20"])
def test_bad_k_rejected(bad_k):
    with pytest.raises(BayesLRPError, match="k must"):
        M.topk_mask(torch.ones(1, 10), bad_k)


def test_k_selecting_no_pixel_rejected():
    with pytest.raises(BayesLRPError, match="selects no pixel"):
        M.lrp_robustness(torch.ones(2, 8), torch.ones(2, 8), k=10)   # floor(0.8) = 0
    with pytest.raises(BayesLRPError, match="selects no pixel"):
        M.topk_mask(torch.ones(2, 10), k=10, mode="signed")          # floor(0.5) = 0


def test_invalid_inputs_rejected():
    with pytest.raises(BayesLRPError, match="NaN"):
        M.lrp_robustness(torch.tensor([[1.0, math.nan]]), torch.ones(1, 2), 50)
    with pytest.raises(BayesLRPError, match="same shape"):
        M.lrp_robustness(torch.ones(2, 10), torch.ones(2, 12), 50)
    with pytest.raises(BayesLRPError, match="batch dimension"):
        M.topk_mask(torch.ones(10), 50)
    with pytest.raises(BayesLRPError, match="mode"):
        M.topk_mask(torch.ones(1, 10), 50, mode="rel")
    with pytest.raises(BayesLRPError, match="ties"):
        M.topk_mask(torch.ones(1, 10), 50, ties="random")


def test_softmax_robustness_hand_case():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    pa = torch.tensor([[0.1, 0.8, 0.1], [0.5, 0.4, 0.1]])
    assert M.softmax_robustness(p, pa).tolist() == pytest.approx([0.4, 0.9])
    assert M.softmax_robustness(p, p).tolist() == [1.0, 1.0]
    with pytest.raises(BayesLRPError, match="logits"):
        M.softmax_robustness(torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 0.5]]))


def test_attack_outcomes_hand_case():
    y = torch.tensor([0, 1, 2, 3])
    clean = torch.tensor([0, 1, 0, 3])     # image 2 misclassified before the attack
    adv = torch.tensor([1, 1, 2, 0])
    assert M.attack_success(y, clean, adv).tolist() == [True, False, False, True]
    assert M.failed_attack(y, clean, adv).tolist() == [False, True, False, False]
    assert float(M.accuracy(clean, y)) == 0.75
    scores = torch.nn.functional.one_hot(adv, 4).float()
    assert M.attack_success(y, clean, scores).tolist() == [True, False, False, True]
    assert float(M.accuracy(scores, y)) == 0.5
    with pytest.raises(BayesLRPError, match="batch sizes"):
        M.attack_success(y, clean, adv[:3])


# --------------------------------------------------------------------------- properties

# Heatmaps with many exact ties and zeros: small integer values, some scaled.
_values = st.integers(-3, 3)


@st.composite
def _pair(draw):
    B = draw(st.integers(1, 4))
    P = draw(st.integers(4, 24))
    r = draw(st.lists(st.lists(_values, min_size=P, max_size=P), min_size=B, max_size=B))
    ra = draw(st.lists(st.lists(_values, min_size=P, max_size=P), min_size=B, max_size=B))
    mode = draw(st.sampled_from(M.MODES))
    ties = draw(st.sampled_from(M.TIES))
    lo = 100 / P if mode == "abs" else 200 / P   # smallest k selecting at least one pixel
    k = draw(st.floats(lo, 100).map(lambda v: round(v, 3)).filter(lambda v: v >= lo))
    return r, ra, k, mode, ties


@settings(max_examples=150, deadline=None)
@given(_pair())
def test_matches_per_image_reference(case):
    r, ra, k, mode, ties = case
    R, Ra = torch.tensor(r, dtype=torch.float32), torch.tensor(ra, dtype=torch.float32)
    got = M.lrp_robustness(R, Ra, k, mode=mode, ties=ties)
    want = [_ref_robustness(a, b, k, mode, ties) for a, b in zip(r, ra)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    masks = M.topk_mask(R, k, mode=mode, ties=ties)
    for row, mask in zip(r, masks):
        assert {i for i, m in enumerate(mask.tolist()) if m} == _ref_select(row, k, mode, ties)[0]


@settings(max_examples=100, deadline=None)
@given(_pair())
def test_properties(case):
    r, ra, k, mode, ties = case
    R, Ra = torch.tensor(r, dtype=torch.float32), torch.tensor(ra, dtype=torch.float32)
    rob = M.lrp_robustness(R, Ra, k, mode=mode, ties=ties)
    assert ((rob >= 0) & (rob <= 1)).all()
    assert torch.equal(M.lrp_robustness(R, R, k, mode=mode, ties=ties), torch.ones(len(r)))
    perm = torch.randperm(len(r), generator=torch.Generator().manual_seed(len(r)))
    assert torch.equal(M.lrp_robustness(R[perm], Ra[perm], k, mode=mode, ties=ties), rob[perm])
    # positive rescaling of either heatmap changes nothing
    assert torch.equal(M.lrp_robustness(2.5 * R, 0.5 * Ra, k, mode=mode, ties=ties), rob)
    K = M.topk_count(R.shape[1], k, mode)
    sizes = M.topk_mask(R, k, mode=mode, ties=ties).sum(1)
    if ties == "index":
        assert (sizes == K).all()
    elif mode == "abs":
        assert torch.equal(sizes, torch.minimum(torch.full_like(sizes, K), M.nnz(R)))
    else:
        assert (sizes <= K).all()


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5000), st.floats(0.01, 100))
def test_topk_count_is_floor(P, k):
    k = round(k, 2)
    if k <= 0:
        return
    assert M.topk_count(P, k) == math.floor(round(k * 100) * P / 10000)
