"""`GuidanceFreePipeline` around a converted GFT DiT (`transformer=`): the official DiT sampling, one call per step.

The network is the tiny official GFT DiT with random weights recorded in ``tests/golden/data/gft/dit_tiny.*``,
converted by ``hfgen convert gft-dit``. The references are the official sampler of the paper's evaluation
(thu-ml/GFT ``DiT/dpm_sample.py`` ``diffusers_sample``: ``DPMSolverMultistepScheduler(solver_order=2)``, the
learned-sigma half dropped) run with the official network on the same initial noise, recorded in
``tests/golden/data/gft/dit_sampling.*`` by ``scripts/golden/record_gft.py``. The official loop feeds the network
``t + 1`` where Diffusers' ``DiTPipeline`` and this pipeline feed ``t``: the recorded references call the network at
``t`` (``free``, ``cfg_*``); ``free_official_shift`` is the loop as it is (see the last test).

Measured (clean; max abs difference relative to the reference's max abs, as the random weights make the latents
O(100)): 0 (bit-identical) for guidance-free sampling and for CFG against the official ``forward_with_cfg`` (GFT
DiT, β = 1 in both branches; plain DiT, no β). Tolerance 1e-5.
Broken on purpose once (then restored; the numbers are against the former transcription, the first break re-checked
against the recording: all three comparisons fail):
- the learned-sigma half taken instead of the ε half (``out[:, in_channels:]``): 0.46 / 0.48 / 0.54, all three fail;
- the null label ``num_classes - 1`` instead of ``num_classes``: both CFG cases fail (1.8e-2, 1.3e-2); the
  guidance-free one passes (it never uses the null label), as it should;
- β not fed to the transformer (``beta=None``): guidance-free 0.19 and GFT-DiT CFG 0.15 fail; the plain DiT passes.
"""

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

from hfgen.convert import convert
from hfgen.pipelines import GuidanceFreePipeline
from tests.golden.recorded import load_recording
from tests.test_convert_gft_dit import recorded_dit

STEPS, NUM_CLASSES, LABELS = 4, 10, [1, 7, 9]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(official sampler outputs, converted GFTDiTTransformer2DModel, converted plain DiT without β input)."""
    tmp = tmp_path_factory.mktemp("gft_dit")
    states, _, _, _ = recorded_dit()
    torch.save(states, tmp / "gft.pt")
    torch.save({k: v for k, v in states["ema"].items() if k != "t_embedder.cond_proj.weight"}, tmp / "plain.pt")
    samples, provenance = load_recording("gft", "dit_sampling")
    assert (provenance["steps"], provenance["labels"]) == (STEPS, LABELS)
    return samples, convert("gft-dit", tmp / "gft.pt", num_heads=2), convert("gft-dit", tmp / "plain.pt", num_heads=2)


def rel(a, b) -> float:
    """Max abs difference relative to the reference's max abs (random weights make the latents O(100))."""
    return ((a - b).abs().max() / b.abs().max()).item()


def noise():
    return torch.randn(len(LABELS), 4, 8, 8, generator=torch.Generator().manual_seed(0))


def pipeline(transformer):
    pipe = GuidanceFreePipeline(transformer=transformer, scheduler=DPMSolverMultistepScheduler(solver_order=2))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, **kwargs):
    kwargs = {"class_labels": LABELS, "num_inference_steps": STEPS, "latents": noise(), "output_type": "latent", **kwargs}
    return pipe(**kwargs).images


def test_guidance_free_sampling_is_the_official_loop_with_one_call_per_step(models):
    official, dit, _ = models
    calls = []
    hook = dit.register_forward_hook(lambda *a: calls.append(1))
    try:
        latents = sample(pipeline(dit), beta=1 / 1.5)
    finally:
        hook.remove()
    assert len(calls) == STEPS  # one network evaluation per step
    print(f"DIT free: official {rel(latents, official['free']):.2e}")
    assert rel(latents, official["free"]) < 1e-5


@pytest.mark.parametrize("with_beta", [True, False])
def test_cfg_mode_is_the_official_cfg_combination(models, with_beta):
    """``guidance="cfg"``: two passes per step (one batched call), ε_u + s(ε_c − ε_u) with the null label
    ``num_classes`` (DiT's ``LabelEmbedder``), both branches at β = 1 for a GFT DiT, no β for a plain DiT."""
    official, dit, plain = models
    pipe = pipeline(dit if with_beta else plain)
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        latents = sample(pipe, guidance="cfg", guidance_scale=1.5)
    finally:
        hook.remove()
    assert len(calls) == STEPS
    # recorded with the null label num_classes (sample_ddp.py: y_null = 1000 = num_classes), the null half dropped
    reference = official["cfg_beta_one" if with_beta else "cfg_without_beta"]
    print(f"DIT cfg with_beta={with_beta}: {rel(latents, reference):.2e}")
    assert rel(latents, reference) < 1e-5
    if with_beta:  # CFG at scale 1.5 is not the same as guidance-free sampling of this untrained network
        assert rel(sample(pipe, beta=1 / 1.5), latents) > 1e-3


def test_save_and_load_round_trip(models, tmp_path):
    _, dit, _ = models
    pipe = pipeline(dit)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = GuidanceFreePipeline.from_pretrained(tmp_path / "pipe")
    assert type(loaded.transformer) is type(dit) and loaded.unet is None
    assert isinstance(loaded.scheduler, DPMSolverMultistepScheduler)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(sample(loaded, beta=0.5), sample(pipe, beta=0.5))
    assert loaded.num_classes == NUM_CLASSES
    card = (tmp_path / "pipe" / "README.md").read_text()  # the card's usage is the DiT one, not the UNet one
    assert "# transformer: a GFT DiT" in card and "UNet2DConditionModel" not in card


def test_bad_inputs_name_the_argument(models):
    _, dit, plain = models
    pipe = pipeline(dit)
    for labels in ([1, NUM_CLASSES], [-1], [0.5]):  # label num_classes is the null class
        with pytest.raises(ValueError, match=r"`class_labels` must be integers in \[0, 9\]"):
            pipe(class_labels=labels, num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="`prompt_embeds`.*class-conditional"):
        pipe(prompt_embeds=torch.zeros(1, 2, 8), num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="beta_cond_proj_dim=None"):
        pipeline(plain)(class_labels=[1], beta=0.5, num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="not both"):
        GuidanceFreePipeline(unet=torch.nn.Linear(1, 1), transformer=dit, scheduler=DPMSolverMultistepScheduler())
    with pytest.raises(ValueError, match="`transformer` must be a GFTDiTTransformer2DModel"):
        GuidanceFreePipeline(transformer=torch.nn.Linear(1, 1), scheduler=DPMSolverMultistepScheduler())
    with pytest.raises(ValueError, match="no denoiser"):
        GuidanceFreePipeline(scheduler=DPMSolverMultistepScheduler())(class_labels=[1])


def test_gft_trainer_refuses_the_dit_by_name(models, tmp_path):
    """``has_beta_input`` is true for the DiT, but GFTTrainer's loss calls the UNet interface: refused up front.
    Without the check the trainer fails on an unrelated argument (``null_encoder_hidden_states``)."""
    from hfgen.trainers import GFTConfig, GFTTrainer

    _, dit, _ = models
    args = GFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1)
    with pytest.raises(ValueError, match="`model` is a GFTDiTTransformer2DModel"):
        GFTTrainer(dit, args=args, train_dataset=[{"pixel_values": torch.zeros(4, 8, 8), "labels": 0}])


def test_the_official_timestep_shift_is_a_real_difference(models):
    """The official evaluation feeds ``t + 1``; the pipeline feeds ``t`` (Diffusers' convention): not the same
    latents, which is why the references above call the network at ``t``."""
    official, dit, _ = models
    latents = sample(pipeline(dit), beta=1 / 1.5)
    print(f"DIT shift: {rel(latents, official['free_official_shift']):.2e}")
    assert rel(latents, official["free_official_shift"]) > 1e-3
    assert rel(official["free_official_shift"], official["free"]) > 1e-3


def test_images_are_decoded_by_the_vae_and_refused_without_one(models):
    """With a ``vae`` the pipeline decodes ``latents / vae.config.scaling_factor`` as Diffusers' ``DiTPipeline`` does
    (checked against a by-hand decode of the ``"latent"`` output, same noise); without one a DiT pipeline refuses any
    ``output_type`` but ``"latent"``, naming it (before this check, ``"pil"`` turned raw latents into RGBA images)."""
    from diffusers import AutoencoderKL

    _, dit, _ = models
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, scaling_factor=0.18215).eval()
    pipe = GuidanceFreePipeline(transformer=dit, scheduler=DPMSolverMultistepScheduler(solver_order=2), vae=vae)
    pipe.set_progress_bar_config(disable=True)
    images = sample(pipe, beta=0.5, output_type="pt")
    latents = sample(pipe, beta=0.5)
    with torch.no_grad():
        by_hand = (vae.decode(latents / 0.18215).sample / 2 + 0.5).clamp(0, 1)
    assert images.shape == (len(LABELS), 3, 16, 16)
    torch.testing.assert_close(images, by_hand)
    with pytest.raises(ValueError, match="output_type"):
        sample(pipeline(dit), beta=0.5, output_type="pil")
