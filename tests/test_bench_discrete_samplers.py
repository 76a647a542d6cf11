"""Smoke test of scripts/bench_discrete_samplers.py: a tiny run writes a complete record whose numbers make sense."""

import numpy as np
import pytest

from hfgen.results import read_record


@pytest.fixture
def bench(load_script):
    return load_script("bench_discrete_samplers")


def test_exact_law_is_a_law(bench):
    law = bench.ContextTableDenoiser(vocab=2, length=3, seed=0).exact_law()
    assert law.shape == (8,) and np.isclose(law.sum(), 1.0) and (law > 0).all()


def test_a_tiny_run_writes_a_record_and_its_table(bench, tmp_path):
    metrics, settings = bench.run(length=3, vocab=2, samples=3000, seeds=(0, 1), raw_dir=tmp_path)
    record = read_record(tmp_path / "masked_diffusion" / "bench_discrete_samplers.json")
    assert record["metrics"] == metrics and settings["budgets"] == [2, 3]
    arms = {(info["sampler"], info["calls"]) for info in settings["arms"].values()}
    assert ("FHS exact", 3) in arms and ("BlockRefinementScheduler (Diffusers)", 2) in arms
    for arm, values in metrics.items():
        calls = settings["arms"][arm]["calls"]
        assert all(nfe <= calls for nfe in values["nfe"]) and len(values["tv_to_exact"]) == 2
    exact_fhs = metrics["FHS exact @ 3 calls"]["tv_to_exact"]
    assert max(exact_fhs) < 0.04  # exact FHS samples the enumerated law: only Monte-Carlo error
    assert min(metrics["BlockRefinementScheduler (Diffusers) @ 3 calls"]["tv_to_exact"]) > max(exact_fhs)
    table = bench.table(record)
    assert table.count("\n") == 1 + len(metrics) and "FHS exact | 3 |" in table
