"""``hfgen convert KIND SOURCE OUTPUT``: a converted folder that loads, and one-line errors for bad input."""

import json

import pytest
import torch
from safetensors.torch import save_file

from hfgen.cli import main
from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTForMaskedLM
from tests.test_convert_mdlm import RECORDING, recorded_weights


@pytest.fixture
def source(tmp_path):
    """The official MDLM DiT's recorded tiny weights (``tests/golden/data/mdlm/dit``) as a safetensors file."""
    weights = recorded_weights()
    path = tmp_path / "mdlm.safetensors"
    save_file(weights, str(path))
    return weights, path


def test_convert_writes_a_loadable_folder(source, tmp_path, capsys):
    _, path = source
    out = tmp_path / "converted"
    assert main(["convert", "sedd-absorb", str(path), str(out), "-o", "use_ema=False"]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "hfgen_checksums.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["model_type"] == "hfgen_mdlm_dit"
    assert str(path) in (out / "README.md").read_text()
    model = MDLMDiTForMaskedLM.from_pretrained(out).eval()
    ids, sigma = RECORDING["sedd.input_ids"], RECORDING["sedd.sigma"]
    with torch.no_grad():
        assert (model(input_ids=ids, sigma=sigma).logits - RECORDING["sedd.logits"]).abs().max() < 1e-5
    # an existing output is not replaced silently
    assert main(["convert", "mdlm", str(path), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "mdlm", str(path), str(out), "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["time_conditioning"] is False


def test_bad_input_is_one_line_naming_it(source, tmp_path, capsys):
    weights, path = source
    with pytest.raises(SystemExit):
        main(["convert", "no-such-kind", str(path), str(tmp_path / "o")])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["convert", "mdlm", str(path), str(tmp_path / "o"), "-o", "bogus=1"]) == 2
    assert "bogus=1" in capsys.readouterr().err
    assert main(["convert", "mdlm", str(path), str(tmp_path / "o"), "-o", "torch_dtype=float99"]) == 2
    assert "torch_dtype=float99" in capsys.readouterr().err
    assert main(["convert", "mdlm", str(tmp_path / "absent.safetensors"), str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    state = dict(weights)
    state["output_layer.extra_head.weight"] = torch.zeros(3)
    save_file(state, str(tmp_path / "extra.safetensors"))
    assert main(["convert", "mdlm", str(tmp_path / "extra.safetensors"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output_layer.extra_head.weight" in err
    assert not (tmp_path / "o").exists()


def test_hfgen_load_dispatches_converted_folders(source, tmp_path):
    """``hfgen.load`` finds the converted classes through the method registry."""
    import hfgen
    from hfgen.convert import convert
    from hfgen.pipelines.gft.modeling_gft_dit import GFTDiTTransformer2DModel
    from tests.test_convert_gft_dit import recorded_dit

    _, path = source
    convert("mdlm", path, tmp_path / "mdlm")
    assert type(hfgen.load(tmp_path / "mdlm")) is MDLMDiTForMaskedLM
    torch.save(recorded_dit()[0]["ema"], tmp_path / "dit.pt")
    convert("gft-dit", tmp_path / "dit.pt", tmp_path / "dit", num_heads=2)
    assert type(hfgen.load(tmp_path / "dit")) is GFTDiTTransformer2DModel


def test_cli_converts_a_ddbm_teacher_with_options(tmp_path, capsys):
    from diffusers import UNet2DModel

    from tests.test_convert_ddbm import recorded_state

    torch.save(recorded_state()[0], tmp_path / "ema.pt")
    args = ["convert", "ddbm", str(tmp_path / "ema.pt"), str(tmp_path / "teacher"), "-o", "image_size=16", "-o", "num_channels=32",
            "-o", "num_res_blocks=1", "-o", "channel_mult=1,2", "-o", "attention_resolutions=8", "-o", "num_head_channels=32"]
    assert main(args) == 0, capsys.readouterr().err
    assert UNet2DModel.from_pretrained(tmp_path / "teacher").config.in_channels == 6
    assert main(["convert", "ddbm", str(tmp_path / "ema.pt"), str(tmp_path / "t2"), "-o", "preset=e2h"]) == 2
    assert "does not match the expected architecture" in capsys.readouterr().err  # tiny checkpoint, e2h architecture
