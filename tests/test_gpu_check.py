"""scripts/gpu_check.py, the prepared first GPU run, exercised on the CPU with --tiny."""

import json

import pytest


def check_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"check"')]


def test_gpu_check_prints_one_json_line_per_check_and_survives_a_failing_check(load_script, capsys, monkeypatch, tmp_path):
    gpu_check = load_script("gpu_check")
    monkeypatch.setattr(gpu_check, "gft_vs_cfg", lambda device, tiny: 1 / 0)  # a broken check
    status = gpu_check.main(["--device", "cpu", "--tiny", "--only", "pipeline/mdm-ancestral/", "pipeline/ctm-unet/",
                             "bench/", "--jsonl", str(tmp_path / "lines.jsonl")])
    lines = check_lines(capsys.readouterr().out)
    by_name = {line["check"]: line for line in lines}
    assert status == 1 and lines[0]["check"] == "environment" and lines[-1]["check"] == "summary"
    assert {"pipeline/mdm-ancestral/bfloat16/generator-cpu", "pipeline/ctm-unet/bfloat16/generator-cpu",
            "bench/fhs-vs-ancestral"} <= {name for name, line in by_name.items() if line["ok"]}
    assert not by_name["bench/gft-vs-cfg"]["ok"] and "ZeroDivisionError" in by_name["bench/gft-vs-cfg"]["error"]
    assert by_name["summary"]["failed"] == ["bench/gft-vs-cfg"]  # ran after the failure and reported it
    assert by_name["bench/fhs-vs-ancestral"]["fhs_nfe"] == 64
    assert [json.loads(line) for line in (tmp_path / "lines.jsonl").read_text().splitlines()] == lines


@pytest.mark.slow
def test_gpu_check_tiny_passes_every_check_on_the_cpu(load_script, capsys, tmp_path):
    gpu_check = load_script("gpu_check")
    status = gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)])
    lines = check_lines(capsys.readouterr().out)
    assert [line["check"] for line in lines if not line["ok"]] == [] and status == 0
    names = {line["check"] for line in lines}
    assert {"trainer/masked_diffusion", "trainer/gft", "trainer/iisan", "bench/gft-vs-cfg"} <= names
    assert (tmp_path / "gpu_check" / "cpu-tiny.json").is_file()
