"""Calibration oracles: NLL and ECE on constructed predictions, computed by hand."""
import math

import pytest
import torch

from bayeslrp.calibration import (calibration, expected_calibration_error,
                                  negative_log_likelihood)
from bayeslrp.errors import BayesLRPError


def test_nll_by_hand():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.8, 0.1]])
    y = torch.tensor([0, 1, 1])
    want = -(math.log(0.7) + math.log(0.25) + math.log(0.8)) / 3
    assert negative_log_likelihood(p, y) == pytest.approx(want, abs=1e-7)


def test_nll_of_a_zero_probability_is_finite_at_the_float64_floor():
    p = torch.tensor([[1.0, 0.0]])
    assert negative_log_likelihood(p, torch.tensor([1])) == pytest.approx(
        -math.log(torch.finfo(torch.float64).tiny), rel=1e-12)


def test_ece_by_hand_with_15_bins():
    # confidences 0.95, 0.95 (bin 14), 0.55 (bin 8), 0.35 (bin 5; 0.35*15 = 5.25 -> (5/15, 6/15])
    p = torch.tensor([[0.95, 0.05, 0.0], [0.05, 0.95, 0.0], [0.55, 0.45, 0.0],
                      [0.35, 0.33, 0.32]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 2])
    # bin 14: acc 1/2, conf 0.95 -> 2/4 * 0.45; bin 8: acc 1, conf 0.55 -> 1/4 * 0.45;
    # bin 5: acc 0, conf 0.35 -> 1/4 * 0.35
    want = 0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.35
    assert expected_calibration_error(p, y) == pytest.approx(want, abs=1e-12)


def test_ece_bin_edges_are_right_closed():
    # 2/3 lies exactly on an edge for 3 bins: it belongs to (1/3, 2/3], bin 1, with 0.6
    p = torch.tensor([[2 / 3, 1 / 3], [0.6, 0.4]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # one bin holding both: acc 1/2, conf (2/3 + 0.6)/2 -> |0.5 - 0.6333|
    assert expected_calibration_error(p, y, n_bins=3) == pytest.approx(
        abs(0.5 - (2 / 3 + 0.6) / 2), abs=1e-12)
    # separate bins would give 1/2*(1 - 2/3) + 1/2*0.6 = 0.4667: not what it returns
    assert expected_calibration_error(p, y, n_bins=3) < 0.2


def test_perfectly_calibrated_and_one_hot_cases():
    y = torch.tensor([0, 1, 2, 0])
    assert expected_calibration_error(torch.nn.functional.one_hot(y, 3).double(), y) == 0.0
    # 10 images at confidence 0.8 of which 8 are right: ECE 0
    p = torch.tensor([[0.8, 0.2]] * 10, dtype=torch.float64)
    y = torch.tensor([0] * 8 + [1] * 2)
    assert expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-12)


def test_calibration_bundle_matches_the_parts():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(200, 10, generator=g).softmax(-1)
    y = torch.randint(0, 10, (200,), generator=g)
    out = calibration(p, y)
    assert out["accuracy"] == pytest.approx(float((p.argmax(1) == y).float().mean()))
    assert out["nll"] == pytest.approx(negative_log_likelihood(p, y))
    assert out["ece"] == pytest.approx(expected_calibration_error(p, y))
    assert out["ece_bins"] == 15 and out["n"] == 200


def test_bad_shapes_and_labels_are_refused():
    with pytest.raises(BayesLRPError):
        calibration(torch.ones(3, 2) / 2, torch.tensor([0, 1]))
    with pytest.raises(BayesLRPError):
        calibration(torch.ones(2, 2) / 2, torch.tensor([0, 2]))


def test_report_models_table_shows_calibration_and_posterior_columns():
    import pandas as pd

    from bayeslrp.report.tables import accuracy_table

    models = [{"name": "a", "method": "hmc", "arch": "fc2", "dataset": "mnist",
               "test_accuracy": 0.9, "n_samples": 4,
               "calibration": {"nll": 0.3, "ece": 0.02, "accuracy": 0.9},
               "posterior": {"n_samples": 4, "prediction_disagreement": 0.1,
                             "predictive_ess": {"median": 3.0}}},
              {"name": "old", "method": "det", "arch": "fc2", "dataset": "mnist",
               "test_accuracy": 0.95, "n_samples": 1, "calibration": None}]
    table = accuracy_table(models, pd.DataFrame()).set_index("model")
    assert table.loc["a", "test NLL"] == 0.3 and table.loc["a", "test ECE (15 bins)"] == 0.02
    assert table.loc["a", "posterior: prediction_disagreement"] == 0.1
    assert table.loc["a", "posterior: predictive_ess.median"] == 3.0
    assert math.isnan(table.loc["old", "test NLL"])  # trained before calibration existed
