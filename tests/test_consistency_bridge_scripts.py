"""Smoke-sized runs of the CDBM study on a 2-D bridge with a known coupling (its logic, not its numbers)."""

import math

import pytest
import torch


def test_toy2d_metrics_tell_the_true_coupling_from_a_collapsed_or_averaged_one(load_script):
    toy = load_script("bridge_toy2d")
    test = toy.KnownCoupling(2048)
    twice = lambda x: x.unsqueeze(1).repeat(1, toy.SAMPLES_PER_SOURCE, 1).float()  # noqa: E731
    exact = test.quality(test.exact_draw(0))
    first_atom = test.quality(twice(test.atoms[:, 0]))  # every source sent to its first atom
    mean = test.quality(twice((2 * test.weight - 1).unsqueeze(1) * test.atoms[:, 0]))  # E[x_0 | y]
    assert exact["error"] < 1e-6 and first_atom["error"] < 1e-6 and mean["error"] > 0.1
    # the fraction sent to the first atom is 1 where w(theta) is 0.5 + 0.35 cos(theta): off by 0.5 on average
    assert first_atom["weight_error"] == pytest.approx(0.5, abs=0.01) and exact["weight_error"] < 0.05
    assert abs(exact["energy"]) < 0.03 and first_atom["energy"] > 0.5 and mean["energy"] > 0.5
    assert exact["swd"] < first_atom["swd"] and exact["swd"] < mean["swd"]
    # the blur that sets the claim's margin costs about the margin
    assert toy.MARGIN / 2 < test.margin_reference(1) < 2 * toy.MARGIN


def test_toy2d_swd_is_the_exact_one_dimensional_w2_when_projected(load_script):
    toy = load_script("bridge_toy2d")
    test = toy.KnownCoupling(4)
    test.directions = torch.tensor([[0.0], [0.0], [1.0], [0.0]], dtype=torch.float64)  # the target's first coordinate
    y = test.y.double()
    joint = torch.cat([torch.cat([y, test.atoms[:, 0]], 1), torch.cat([y, test.atoms[:, 1]], 1)])
    test.reference, order = (joint @ test.directions).T.sort(1)
    test.reference_levels = torch.cat([test.weight, 1 - test.weight])[order].cumsum(1) / 4
    x = test.atoms[:, 0].float().unsqueeze(1)  # one target a source
    # brute force: the quantile functions on a fine grid of levels
    levels = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    generated = x[:, 0, 0].double().sort().values[(levels * 4).long()]
    reference = test.reference[0][torch.searchsorted(test.reference_levels[0], levels).clamp_max(7)]
    assert test.swd(x) == pytest.approx(math.sqrt((generated - reference).pow(2).mean().item()), rel=1e-3)


@pytest.mark.slow  # about 20 s on 2 shared cores: run by .ci/run with -m slow
def test_toy2d_study_records_every_sampler_for_every_seed(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    _, path = load_script("bridge_toy2d").main([
        "--seeds", "0", "1", "--teacher-steps", "2", "--student-steps", "2", "--teacher-lrs", "1e-3", "2e-3",
        "--student-lrs", "1e-4", "2e-4", "--n-train", "64", "--n-validation", "32", "--n-eval", "64", "--hidden", "16",
        "--heun-steps", "2", "--dbim-steps", "2", "--cdbm-steps", "1", "2", "--figures-dir", str(tmp_path / "fig"),
        "--raw-dir", str(tmp_path / "raw"), "--work-dir", str(tmp_path / "w"),
    ])
    record = read_record(path)
    arms = ["DDBM teacher, Heun, 5 NFE", "DDBM teacher, DBIM (ODE-1), 2 NFE", "CDBM (CBD), 1 NFE, boot-only",
            "CDBM (CBD), 2 NFE", "CDBM (CBT), 1 NFE, boot-only", "CDBM (CBT), 2 NFE", "exact coupling (fresh draw)"]
    check_arms(record, arms, ["energy", "error", "weight_error", "swd", "nfe"])
    assert set(record["metrics"]) == set(arms) and record["seeds"] == [0, 1]
    assert record["metrics"]["CDBM (CBD), 2 NFE"]["nfe"] == [2, 2] and record["metrics"]["DDBM teacher, Heun, 5 NFE"]["nfe"] == [5, 5]
    claim = record["settings"]["claim"]
    assert claim["arm"] in record["metrics"] and claim["baseline"] == "DDBM teacher, Heun, 5 NFE" and claim["margin"] > 0
    assert set(record["settings"]["budget"]) == set(arms)
    for model in ("teacher", "CBD", "CBT"):  # each model chose its lr from a grid of the same size, for every seed
        assert [len(found) for found in record["settings"]["validation_energy_by_lr"][model]] == [2, 2]
    assert all(lr in (1e-4, 2e-4) for lr in record["metrics"]["CDBM (CBT), 2 NFE"]["lr"])
    assert len(record["settings"]["margin_reference"]) == 2
    assert set(record["figures"]) == {str(tmp_path / "fig" / "consistency_bridge_toy2d_nfe.png")}
