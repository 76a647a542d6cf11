"""GFT's released SD1.5 UNet: ``hfgen convert gft-sd15`` and one guidance-free call per step in ``GuidanceFreePipeline``.

Parity: a tiny random ``UNet2DConditionModel`` with a β input (every weight random, ``cond_proj`` included) and the
official β call on it, ``unet(x, t, timestep_cond=guidance_scale_embedding(1/β − 1), encoder_hidden_states)``
(thu-ml/GFT ``stable-diffusion-v1-5/train.py``), are recorded in ``tests/golden/data/gft/sd15_unet_call.*`` by
``scripts/golden/record_gft.py`` (weights and config included). The recorded UNet, saved as the release is (a
Diffusers folder), is converted; inside ``GuidanceFreePipeline`` it must predict what the official call recorded.
Broken on purpose: making hfgen's ``beta_embedding`` embed ``beta`` instead of ``1/beta − 1`` gives a max abs
diff of 1.7e-3 at beta = 0.5 (fails the 1e-5 check).
"""

import json

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from hfgen.convert import ConversionError, convert
from hfgen.pipelines import GuidanceFreePipeline
from tests.golden.recorded import load_recording


def tiny_unet(time_cond_proj_dim=16, seed=0):
    """The recording's UNet (``scripts/golden/record_gft.py`` builds it with this function, then saves its weights)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
                                norm_num_groups=4, attention_head_dim=2, time_cond_proj_dim=time_cond_proj_dim)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.1)
    return unet.eval()


@pytest.fixture(scope="module")
def recording():
    return load_recording("gft", "sd15_unet_call")


@pytest.fixture
def released(tmp_path, recording):
    tensors, provenance = recording
    unet = UNet2DConditionModel.from_config(provenance["unet_config"])
    unet.load_state_dict({k[len("unet."):]: v for k, v in tensors.items() if k.startswith("unet.")})
    unet.eval().save_pretrained(tmp_path / "SD1.5-GF-finetune" / "unet")
    return unet, tmp_path / "SD1.5-GF-finetune" / "unet"


def test_parity_one_call_per_step(released, recording, tmp_path):
    official, folder = released
    tensors, _ = recording
    unet = convert("gft-sd15", folder, tmp_path / "converted")
    pipe = GuidanceFreePipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000))
    x, emb, t = tensors["x"], tensors["encoder_hidden_states"], tensors["t"]
    for beta in (1.0, 0.5, 0.2):
        with torch.no_grad():
            got = pipe.predict(x, t, beta, 1 / beta, "free", {"encoder_hidden_states": emb}, None)
        assert (got - tensors[f"beta{beta}"]).abs().max() < 1e-5, beta
    calls = []
    unet.register_forward_hook(lambda *a: calls.append(1))
    pipe.set_progress_bar_config(disable=True)
    pipe(prompt_embeds=emb, beta=0.25, num_inference_steps=4, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert len(calls) == 4  # guidance-free: one UNet call per step
    reloaded = UNet2DConditionModel.from_pretrained(tmp_path / "converted")
    assert all(torch.equal(p, reloaded.state_dict()[k]) for k, p in official.state_dict().items())
    card = (tmp_path / "converted" / "README.md").read_text()
    assert "hfgen convert gft-sd15" in card
    assert "\nlicense: creativeml-openrail-m\n" in card and "Stable Diffusion v1.5" in card  # the upstream licence


def test_bin_source_is_read_weights_only(released, tmp_path):
    official, folder = released
    src = tmp_path / "bin_unet"
    src.mkdir()
    (src / "config.json").write_text((folder / "config.json").read_text())
    torch.save(official.state_dict(), src / "diffusion_pytorch_model.bin")
    unet = convert("gft-sd15", src)
    assert all(torch.equal(p, unet.state_dict()[k]) for k, p in official.state_dict().items())


def test_refusals_name_the_problem(released, tmp_path):
    official, folder = released
    from safetensors.torch import save_file

    config = json.loads((folder / "config.json").read_text())
    state = {k: v.contiguous() for k, v in official.state_dict().items()}
    for name, sd, cfg, pattern in [
        ("extra", {**state, "time_embedding.beta_mlp.weight": torch.zeros(2)}, config, r"unmapped.*time_embedding\.beta_mlp\.weight"),
        ("missing", {k: v for k, v in state.items() if k != "time_embedding.cond_proj.weight"}, config,
         r"missing tensors: time_embedding\.cond_proj\.weight"),
        ("nobeta", state, {**config, "time_cond_proj_dim": None}, r"no `time_cond_proj_dim`"),
    ]:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
        save_file(sd, str(d / "diffusion_pytorch_model.safetensors"))
        with pytest.raises(ConversionError, match=pattern):
            convert("gft-sd15", d, tmp_path / f"{name}-out")
        assert not (tmp_path / f"{name}-out").exists()
