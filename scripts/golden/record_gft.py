"""Record the official GFT code's outputs (thu-ml/GFT) for hfgen's golden and converter parity tests.

    python scripts/golden/record_gft.py --checkout /path/to/GFT [--commit SHA] [--pydeps DIR]

Imports from the checkout: ``DiT/models.py`` (``DiT``, ``TimestepEmbedder``), ``DiT/diffusion`` (``create_diffusion``,
``GaussianDiffusion.training_losses``), ``DiT/dpm_sample.py`` (``diffusers_sample``) and
``stable-diffusion-v1-5/train.py`` (``guidance_scale_embedding``). Writes ``tests/golden/data/gft/``:

- ``dit_timestep_embedding`` / ``sd15_guidance_scale_embedding``: both β embeddings of ``tests/golden/test_gft.py``'s
  β values and widths;
- ``dit_loss``: the official DiT training loss (``args.rm_guidance``) and its gradient, on the tiny UNet and the
  DiT-interface adapter of ``tests/golden/test_gft.py`` (weights included), for both label-drop rates;
- ``dit_tiny``: a tiny official ``DiT(use_beta_embed=True, beta_in="linear")`` with seeded random weights (raw
  ``model`` and ``ema``, saved), its outputs with and without β (``tests/test_convert_gft_dit.py``);
- ``dit_sampling``: the official ``diffusers_sample`` with that network, guidance-free and CFG
  (``forward_with_cfg``) (``tests/test_gft_dit_pipeline.py``);
- ``sd15_unet_call``: the official SD1.5 β call (``unet(x, t, timestep_cond=guidance_scale_embedding(1/β − 1), ...)``)
  of a tiny seeded Diffusers UNet (weights and config saved) (``tests/test_convert_gft_sd15.py``).

Dependencies: the official DiT imports timm (``PatchEmbed``, ``Attention``, ``Mlp``), ``dpm_sample.py`` einops; both
are pure Python, installed outside the project's environment (``pip install --target DIR timm einops``, passed
as ``--pydeps DIR``). timm's and train.py's module-level imports of torchvision and wandb are answered by
stand-ins written here ([`install_import_standins`]): modules whose every attribute is an inert placeholder
class. Nothing of torchvision or wandb is called by the recorded functions.
"""

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.golden import test_gft  # noqa: E402
from tests.golden.recorded import write_recording  # noqa: E402

REPOSITORY = "https://github.com/thu-ml/GFT"
DIT_TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10,
                use_beta_embed=True, beta_in="linear")
SAMPLING_STEPS, SAMPLING_LABELS = 4, [1, 7, 9]
FIXED = {"inputs": "fixed values (tests.golden.test_gft.BETAS), no random draw"}


class _PlaceholderMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (_Placeholder,), {})

    def __hash__(cls):
        return id(cls)


class _Placeholder(metaclass=_PlaceholderMeta):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("import stand-in: not available when recording")


class _StandinModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (_Placeholder,), {})


class _StandinFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, packages):
        self.packages = packages

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.packages:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StandinModule(spec.name)

    def exec_module(self, module):
        module.__path__, module.__version__ = [], "0.0"
        if module.__name__ == "wandb":
            module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)


def install_import_standins():
    sys.meta_path.insert(0, _StandinFinder({"torchvision", "wandb"}))


def import_official(checkout):
    sys.path.insert(0, str(checkout / "DiT"))
    import dpm_sample
    import models
    from diffusion import create_diffusion

    spec = importlib.util.spec_from_file_location("gft_sd15_train", checkout / "stable-diffusion-v1-5" / "train.py")
    sd_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sd_train)
    return models, create_diffusion, dpm_sample, sd_train


def seeded_dit(models, seed):
    """The official DiT, every weight N(0, 0.1) (the zero-initialised adaLN and β projection included), but the
    fixed sin-cos ``pos_embed``. Runs without ``python -O`` (asserts kept): the constructor's assertion error for
    ``beta_in="linear"`` is caught."""
    torch.manual_seed(seed)
    model = models.DiT.__new__(models.DiT)
    try:
        model.__init__(**DIT_TINY)
    except AssertionError:
        # DiT.initialize_weights with beta_in="linear" reaches the ``assert 0`` of its second if/elif chain (see
        # docs/results/fidelity.md, "GFT"); every module exists and pos_embed is set by then, and every other
        # weight is overwritten below.
        pass
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.normal_(0, 0.1)
    return model.eval()


def record_embeddings(models, sd_train, common):
    betas = test_gft.BETAS
    dit = {f"dim{d}": models.TimestepEmbedder.timestep_embedding(betas * 1000, d) for d in test_gft.EMBEDDING_DIMS}
    write_recording("gft", "dit_timestep_embedding", dict(betas=betas, **dit), file="DiT/models.py",
                    function="TimestepEmbedder.timestep_embedding(beta * 1000, dim)", seeds=FIXED, **common)
    sd = {f"dim{d}": sd_train.guidance_scale_embedding(torch.reciprocal(betas) - 1, embedding_dim=d)
          for d in test_gft.EMBEDDING_DIMS}
    write_recording("gft", "sd15_guidance_scale_embedding", dict(betas=betas, **sd),
                    file="stable-diffusion-v1-5/train.py",
                    function="guidance_scale_embedding(torch.reciprocal(beta) - 1, embedding_dim=dim)", seeds=FIXED,
                    **common)


def record_dit_loss(models, create_diffusion, common):
    tensors = {}
    x0, labels = test_gft.dit_data()
    tensors.update(x0=x0, labels=labels)
    diffusion = create_diffusion(timestep_respacing="", learn_sigma=False,  # train.py: not rm_guidance and ...
                                 args=argparse.Namespace(rm_guidance=True, distill=False, min_beta=0.0, max_beta=1.0))
    for p_drop in test_gft.DIT_P_DROP:
        unet = test_gft.dit_unet()
        if "unet.conv_in.weight" not in tensors:
            tensors.update({f"unet.{k}": v.clone() for k, v in unet.state_dict().items()})
        noise, t, u, drop = test_gft.replay(7, x0, p_drop)
        seen_beta = []
        model = test_gft.DiTInterface(unet, drop, models.TimestepEmbedder.timestep_embedding)
        model.register_forward_pre_hook(lambda module, args, kwargs, seen=seen_beta: seen.append(kwargs["beta"]),
                                        with_kwargs=True)
        unet.train()
        torch.manual_seed(7)  # the official th.rand(B) for β is then the replay's u: noise and t are drawn first
        torch.randn_like(x0), torch.randint(0, 1000, (x0.shape[0],))
        loss_dict = diffusion.training_losses(model, x0, t, model_kwargs={"y": labels.clone()}, noise=noise)
        loss = loss_dict["loss"].mean()  # DiT/train.py
        if not torch.equal(seen_beta[0], u):
            raise RuntimeError("the official β draw is not the replayed one")
        params = [(name, p) for name, p in unet.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [p for _, p in params])
        tensors.update({f"p{p_drop}.noise": noise, f"p{p_drop}.t": t, f"p{p_drop}.u": u, f"p{p_drop}.drop": drop,
                        f"p{p_drop}.loss": loss.detach()})
        tensors.update({f"p{p_drop}.grad.{name}": g for (name, _), g in zip(params, grads)})
    write_recording("gft", "dit_loss", tensors, file="DiT/diffusion/gaussian_diffusion.py",
                    function="create_diffusion(timestep_respacing='').training_losses (args.rm_guidance, not distill); "
                             "loss_dict['loss'].mean() as DiT/train.py",
                    seeds={"unet": 0, "beta_projection": 3, "data": 1, "draws": 7},
                    adapter="tests.golden.test_gft.DiTInterface around tests.golden.test_gft.dit_unet(), with the "
                            "official TimestepEmbedder.timestep_embedding", **common)


def record_dit_network_and_sampling(models, dpm_sample, common):
    raw, ema = seeded_dit(models, 0), seeded_dit(models, 1)
    g = torch.Generator().manual_seed(2)
    x, t, y, beta = (torch.randn(3, 4, 8, 8, generator=g), torch.tensor([10.0, 500.0, 999.0]), torch.tensor([1, 7, 10]),
                     torch.tensor([1.0, 0.5, 0.2]))
    with torch.no_grad():
        outputs = dict(ema_with_beta=ema(x, t, y, beta=beta), ema_without_beta=ema(x, t, y),
                       raw_beta_0_3=raw(x, t, y, beta=torch.full((3,), 0.3)))
    weights = {f"model.{k}": v for k, v in raw.state_dict().items()}
    weights.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    write_recording("gft", "dit_tiny", dict(x=x, t=t, y=y, beta=beta, **weights, **outputs), file="DiT/models.py",
                    function="DiT.forward (use_beta_embed=True, beta_in='linear')", seeds={"model": 0, "ema": 1,
                                                                                           "inputs": 2},
                    config=DIT_TINY, **common)

    def noise():
        return torch.randn(len(SAMPLING_LABELS), 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def unshifted(nnet):  # the official loop feeds t + 1; Diffusers' DiTPipeline (and hfgen's pipeline) feed t
        return lambda latents, t_input, **kwargs: nnet(latents, t_input - 1, **kwargs)

    labels = torch.tensor(SAMPLING_LABELS)
    free = {"y": labels, "beta": torch.full((len(labels),), 1 / 1.5)}
    null = torch.tensor(SAMPLING_LABELS + [DIT_TINY["num_classes"]] * len(labels))  # sample_ddp.py: y_null
    with torch.no_grad():
        samples = dict(
            free=dpm_sample.diffusers_sample(unshifted(ema), SAMPLING_STEPS, noise(), "cpu", free),
            free_official_shift=dpm_sample.diffusers_sample(ema, SAMPLING_STEPS, noise(), "cpu", free),
            cfg_beta_one=dpm_sample.diffusers_sample(
                unshifted(ema.forward_with_cfg), SAMPLING_STEPS, torch.cat([noise(), noise()]), "cpu",
                {"y": null, "cfg_scale": 1.5, "beta": torch.ones(len(null))}).chunk(2)[0],
            cfg_without_beta=dpm_sample.diffusers_sample(
                unshifted(ema.forward_with_cfg), SAMPLING_STEPS, torch.cat([noise(), noise()]), "cpu",
                {"y": null, "cfg_scale": 1.5, "beta": None}).chunk(2)[0],
        )
    write_recording("gft", "dit_sampling", samples, file="DiT/dpm_sample.py",
                    function="diffusers_sample (DPMSolverMultistepScheduler(solver_order=2)); DiT.forward and "
                             "DiT.forward_with_cfg of dit_tiny's ema",
                    seeds={"noise": 0, "network": "dit_tiny ema (1)"}, steps=SAMPLING_STEPS, labels=SAMPLING_LABELS,
                    cfg_scale=1.5, guidance_free_beta=1 / 1.5,
                    timestep="free, cfg_*: the network called at t (official loop's t + 1, minus 1, the Diffusers "
                             "convention); free_official_shift: the official loop as it is (t + 1); CFG samples are "
                             "the conditional half (sample_ddp.py drops the null-class half)", **common)


def record_sd15_unet_call(sd_train, common):
    from tests.test_convert_gft_sd15 import tiny_unet

    unet = tiny_unet()
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 5, 12, generator=g)
    t = torch.tensor(417)
    outputs = {}
    with torch.no_grad():
        for beta in (1.0, 0.5, 0.2):
            w_embedding = sd_train.guidance_scale_embedding(torch.reciprocal(torch.full((3,), beta)) - 1,
                                                            embedding_dim=unet.config.time_cond_proj_dim)
            outputs[f"beta{beta}"] = unet(x, t, timestep_cond=w_embedding, encoder_hidden_states=emb,
                                          return_dict=False)[0]
    write_recording("gft", "sd15_unet_call", dict(x=x, encoder_hidden_states=emb, t=t, **outputs,
                                                  **{f"unet.{k}": v for k, v in unet.state_dict().items()}),
                    file="stable-diffusion-v1-5/train.py",
                    function="guidance_scale_embedding and the training step's call unet(noisy_latents, timesteps, "
                             "timestep_cond=guidance_scale_embedding(torch.reciprocal(beta_in) - 1, embedding_dim="
                             "args.unet_time_cond_proj_dim), encoder_hidden_states=...)",
                    seeds={"unet": 0, "inputs": 0}, unet_config=json.loads(json.dumps(dict(unet.config))), **common)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", required=True, help="a checkout of https://github.com/thu-ml/GFT")
    parser.add_argument("--commit", help="the checkout's commit (when it is an exported snapshot without .git)")
    parser.add_argument("--pydeps", help="a folder holding timm and einops (pip install --target)")
    args = parser.parse_args()
    checkout = Path(args.checkout).resolve()
    if not (checkout / "DiT" / "models.py").is_file():
        raise SystemExit(f"--checkout: {checkout} has no DiT/models.py (not a thu-ml/GFT checkout)")
    if args.pydeps:
        sys.path.insert(0, str(Path(args.pydeps).resolve()))
    install_import_standins()
    models, create_diffusion, dpm_sample, sd_train = import_official(checkout)
    import diffusers
    import einops
    import timm

    common = dict(repository=REPOSITORY, checkout=checkout, commit=args.commit,
                  versions={"timm": timm.__version__, "einops": einops.__version__,
                            "diffusers": diffusers.__version__})
    record_embeddings(models, sd_train, common)
    record_dit_loss(models, create_diffusion, common)
    record_dit_network_and_sampling(models, dpm_sample, common)
    record_sd15_unet_call(sd_train, common)


if __name__ == "__main__":
    main()
