import math

import pytest
import torch
from scipy import stats

from lightning_saliency.monitor.metrics import (
    association_z,
    concentration,
    drift,
    jensen_shannon,
    shortcut_suspects,
    summarize,
    token_statistics,
    topk_overlap,
)


def test_drift_matches_scipy_reference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20, generator=g).double(), torch.randn(20, generator=g).double()
    result = drift(a.tolist(), b.tolist(), k=5)
    assert result["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-6)
    assert result["kendall"] == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-6)
    p, q = a.abs() / a.abs().sum(), b.abs() / b.abs().sum()
    from scipy.spatial.distance import jensenshannon

    assert result["jensen_shannon"] == pytest.approx(jensenshannon(p.double(), q.double(), base=2) ** 2, abs=1e-9)
    assert result["sign_agreement"] == pytest.approx(float((a.sign() == b.sign()).float().mean()))


@pytest.mark.parametrize("n", [2, 3, 17, 62, 200])
def test_kendall_tau_b_matches_torchmetrics_and_scipy_with_ties(n):
    from torchmetrics.functional import kendall_rank_corrcoef

    from lightning_saliency.monitor.metrics.drift import kendall

    g = torch.Generator().manual_seed(n)
    for a, b in ((torch.randn(n, generator=g), torch.randn(n, generator=g)),
                 ((torch.randn(n, generator=g) * 2).round(), torch.randn(n, generator=g).round())):  # ties
        a, b = a.double(), b.double()
        expected = float(kendall_rank_corrcoef(a, b))
        if math.isnan(expected):
            assert math.isnan(kendall(a, b))
            continue
        assert kendall(a, b) == pytest.approx(expected, abs=1e-6)  # torchmetrics answers in float32
        assert kendall(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-9)


def test_drift_edge_cases():
    same = drift([0.1, 0.5, -0.3], [0.1, 0.5, -0.3], k=2)
    assert same["spearman"] == pytest.approx(1.0, abs=1e-5) and same["jensen_shannon"] == pytest.approx(0.0)
    assert topk_overlap(torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 0, 0, 1.0]), k=1) == 0.0
    assert math.isnan(drift([1.0, 1.0], [0.3, 0.1])["spearman"])
    assert jensen_shannon(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same tokens"):
        drift([1.0], [1.0, 2.0])
    assert summarize([1.0, math.nan, 3.0])["mean"] == pytest.approx(2.0)


def test_concentration():
    uniform = concentration([1.0, 1.0, 1.0, 1.0, 5.0], [False, False, False, False, True])
    assert uniform["entropy"] == pytest.approx(1.0)
    assert uniform["top1_share"] == pytest.approx(0.25)
    assert uniform["special_share"] == pytest.approx(5 / 9)
    peaked = concentration([0.0, 3.0, 0.0], [False, False, False])
    assert peaked["entropy"] == pytest.approx(0.0) and peaked["top1_share"] == 1.0


def test_association_z_against_formula():
    # 9 of 10 examples with the token are positive, prior 0.5: z = 0.4 / sqrt(0.025).
    assert association_z(9, 10, 0.5) == pytest.approx(0.4 / math.sqrt(0.025))
    assert association_z(0, 0, 0.5) == 0.0


def _run(shortcut_share):
    tokens, scores, special, labels = [], [], [], []
    for i in range(10):
        has = i % 2 == 0
        toks = ["[CLS]", "the", "movie", "zorbly" if has else "film", "great", "[SEP]"]
        vals = [0.0, 0.1, 0.1, shortcut_share if has else 0.1, 0.2, 0.0]
        tokens.append(toks), scores.append(vals), special.append([t.startswith("[") for t in toks]), labels.append(int(has))
    return token_statistics(tokens, scores, special, labels)


def test_token_statistics_and_suspects():
    reference, trained = _run(0.05), _run(2.0)
    stat = trained["zorbly"]
    assert stat.examples == 5 and stat.top1_rate == 1.0 and stat.mean_share == pytest.approx(2.0 / 2.4)
    assert stat.label == 1 and stat.z > 2
    suspects = shortcut_suspects(trained, reference)
    assert [s.token for s in suspects] == ["zorbly"]
    assert suspects[0].rise == pytest.approx(2.0 / 2.4 - 0.05 / 0.45)
    assert shortcut_suspects(reference, reference) == []
    assert shortcut_suspects(trained, trained) == []  # no rise, no alarm


def test_pair_statistics_find_a_pair_that_shares_the_top_two_places():
    from lightning_saliency.monitor.metrics import pair_statistics

    tokens, scores, special = [], [], []
    for i in range(8):
        # The pair splits the mass and alternates at the top, so neither token alone is top-1 in 60%.
        first, second = (0.5, 0.4) if i % 2 else (0.4, 0.5)
        tokens.append(["[CLS]", "zorbly", "the", "quibble", f"w{i}", "[SEP]"])
        scores.append([0.0, first, 0.05, -second, 0.05, 0.0])
        special.append([True, False, False, False, False, True])
    singles = token_statistics(tokens, scores, special)
    assert singles["zorbly"].top1_rate == singles["quibble"].top1_rate == 0.5
    assert shortcut_suspects(singles, min_share=0.3, top1_rate=0.6) == []
    pairs = pair_statistics(tokens, scores, special, labels=[1] * 8)
    stat = pairs["quibble + zorbly"]
    assert stat.examples == 8 and stat.top1_rate == 1.0 and stat.mean_share == pytest.approx(0.9)
    suspect = shortcut_suspects(pairs, min_share=0.6, top1_rate=0.6)[0]
    assert suspect.members == ("quibble", "zorbly") and suspect.token == "quibble + zorbly"
    # Measured on another run for the same pair keys (the reference): here a run without the pair on top.
    flat = [[0.0] + [0.2] * 4 + [0.0] for _ in range(8)]
    before = pair_statistics(tokens, flat, special, pairs=list(pairs))
    assert set(before) == set(pairs) and before["quibble + zorbly"].top1_rate < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_shift_rank_test_equals_scipy_mann_whitney_with_ties(seed):
    import random

    from scipy.stats import mannwhitneyu

    from lightning_saliency.monitor.metrics.rank_test import SHIFT_Z, rank_comparison

    rng = random.Random(seed)
    shifts = [round(rng.gauss(0.05 * seed, 0.1), 2) for _ in range(30)]  # rounded: many ties
    control = [round(rng.gauss(0.0, 0.1), 2) for _ in range(90)]
    ours = rank_comparison(shifts, control)
    reference = mannwhitneyu(shifts, control, alternative="greater", method="asymptotic", use_continuity=False)
    assert ours.p == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-12)
    assert ours.auc == pytest.approx(reference.statistic / (30 * 90))
    assert rank_comparison([], control).z == 0.0 and rank_comparison([0.1] * 3, [0.1] * 5).auc == 0.5
    assert SHIFT_Z == pytest.approx(2.772, abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_ranks_equal_scipy_rankdata_with_ties(seed):
    """The runtime ranks with numpy alone (no scipy in the install); scipy is the reference."""
    import numpy as np
    from scipy.stats import rankdata

    from lightning_saliency.monitor.metrics.rank_test import average_ranks

    rng = np.random.default_rng(seed)
    for _ in range(50):
        values = rng.integers(0, 6, size=int(rng.integers(1, 40))).astype(float)  # small range: many ties
        assert np.allclose(average_ranks(values), rankdata(values))
