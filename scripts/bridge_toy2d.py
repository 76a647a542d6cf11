"""A 2-D bridge with a known coupling: CDBM (CBD, CBT) at 1, 2, 4 NFE against its DDBM teacher at 5-101 NFE.

The task (exact, so every metric is measured against the truth rather than a judge network):

    theta ~ U[0, 2 pi),   y = 0.4 (cos theta, sin theta)                 (source: the inner circle)
    k ~ Bernoulli: first atom with probability w(theta) = 0.5 + 0.35 cos theta, else the second
    x_0 = 0.8 (cos(theta + pi/2 + k pi), sin(theta + pi/2 + k pi))      (target: the outer circle)

so for each source ``y`` the true conditional target distribution is two antipodal atoms with known weights
``w(theta)`` and ``1 - w(theta)``. A bridge sampler has to turn the booting noise into the right atom with the right
frequency; one deterministic evaluation at ``t = T`` can only give the conditional mean, which lies between them.

For each seed: a DDBM teacher (VP bridge, DDBM preconditioning, a small MLP in place of the UNet) is trained with
hfgen's `BridgeTrainer`, then CBD (distillation, CDBM Eq. 17) and CBT (training, Eq. 19-20) students are trained
from it with `ConsistencyBridgeTrainer` (ECT-style sigmoid r(t), stop-grad target, L2). Each of the three models
picks its learning rate from a grid of the same size on VALIDATION pairs (the ``energy`` below of its own headline sampler:
the teacher's Heun at its highest NFE, the students at 2 NFE). On the same held-out source points (an even grid of
angles), two targets a source, with the same sampling seed: the teacher with DDBM's hybrid Heun sampler and with DBIM (eta = 0, the first-order
ODE solver of CDBM Eq. 16) at 5-101 NFE, and CBD / CBT at 1, 2 and 4 NFE (1 NFE is the booting evaluation alone).

Metrics against the known coupling:

- ``energy``: mean over sources of the energy distance between the sampler's conditional and the true one (unbiased:
  0 in expectation for an exact sampler; exact in the true conditional, estimated from the sampler's two targets);
- ``error``: mean distance of a generated target to the nearest atom of its true conditional (precision, 0 = exact);
- ``weight_error``: mean over 8 angular bins of theta of |fraction sent to the first atom - mean w(theta)|;
- ``swd``: sliced 2-Wasserstein distance between the generated joint pairs ``(y, x)`` and the true joint at the same
  sources, which needs no sampling: each source carries its two atoms with their weights (4-D, 128 fixed directions,
  each projection's W2 computed exactly). A joint sliced distance barely sees which target goes with which source (a
  pilot teacher with targets on the right circle at the wrong angles scored near the floor), hence ``energy``.

The arm "exact coupling (fresh draw)" is one draw from the true coupling at the test sources: the finite-sample floor
of each metric (one target per source). The equivalence claim "CDBM (CBD) at 2 NFE matches the teacher's Heun at 101 NFE" is on ``energy`` with the
margin ``MARGIN`` fixed before any model was trained (see its comment). Writes the raw record
``docs/results/raw/consistency_bridge/toy2d.json`` and the figure ``consistency_bridge_toy2d_nfe.png`` (energy
against NFE, mean with 95% t-interval bands over seeds).

    OMP_NUM_THREADS=1 python scripts/bridge_toy2d.py --seeds 0 1 2
    python scripts/bridge_toy2d.py --device cuda --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.unets.unet_2d import UNet2DOutput

from hfgen.results import interval, write_record

ROOT = Path(__file__).resolve().parents[1]
SOURCE_RADIUS, TARGET_RADIUS = 0.4, 0.8
WEIGHT_AMPLITUDE = 0.35  # w(theta) = 0.5 + 0.35 cos(theta), the first atom's probability
ANGLE_BINS = 8
SWD_PROJECTIONS = 64
SAMPLES_PER_SOURCE = 2  # two targets a source: the energy distance needs E|X - X'| of the sampler's conditional
# Equivalence margin on energy, fixed before any model was trained, from the known coupling alone: blurring an exact
# draw of the targets by N(0, 0.05^2 I) (6% of the target radius) raises its energy by 0.021-0.024 at 8192 sources
# (`KnownCoupling.margin_reference`, draws 100-103), about what sending 3% of the targets to the wrong atom costs;
# exact draws themselves score 0 +- 0.01. The record holds the blur's effect measured in the run ("margin_reference").
MARGIN = 0.025
MARGIN_JITTER = 0.05
HEUN_STEPS = (2, 4, 7, 17, 34)  # 3N - 1 = 5, 11, 20, 50, 101 NFE
DBIM_STEPS = (5, 10, 20, 50, 100)
CDBM_STEPS = (1, 2, 4)
TEACHER_LRS = (5e-4, 1.5e-3, 4.5e-3)  # equal grid sizes, each around its own learning rate
STUDENT_LRS = (1e-4, 3e-4, 9e-4)
EXACT = "exact coupling (fresh draw)"
TEACHER_HEUN, TEACHER_DBIM = "DDBM teacher, Heun", "DDBM teacher, DBIM (ODE-1)"


# ----------------------------------------------------------------------------------------------- the coupling


def first_mode_weight(theta: torch.Tensor) -> torch.Tensor:
    """``w(theta)``: the probability that the source at angle ``theta`` goes to the first atom."""
    return 0.5 + WEIGHT_AMPLITUDE * torch.cos(theta)


def atoms(theta: torch.Tensor) -> torch.Tensor:
    """``(n, 2, 2)``: the two atoms of the true conditional target of each source angle (first, second)."""
    first = TARGET_RADIUS * torch.stack([-torch.sin(theta), torch.cos(theta)], dim=-1)  # angle theta + pi / 2
    return torch.stack([first, -first], dim=1)


def draw_targets(theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``x_0 ~ p(x_0 | y(theta))``: each source's first atom with probability ``w(theta)``, else the second."""
    second = (torch.rand(theta.shape, generator=generator, dtype=theta.dtype) >= first_mode_weight(theta)).long()
    return atoms(theta)[torch.arange(len(theta)), second]


def draw_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(theta, y, x_0)``: ``n`` training pairs of the coupling, ``y`` and ``x_0`` float32 ``(n, 2)``."""
    generator = torch.Generator().manual_seed(seed)
    theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    return theta, sources(theta).float(), draw_targets(theta, generator).float()


def sources(theta: torch.Tensor) -> torch.Tensor:
    """The source points ``y(theta)`` on the inner circle, ``(n, 2)``."""
    return SOURCE_RADIUS * torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)


def as_images(points: torch.Tensor) -> torch.Tensor:
    """``(n, 2)`` points as the ``(n, 2, 1, 1)`` one-pixel, two-channel images the bridge trainer and pipeline take."""
    return points.reshape(-1, 2, 1, 1)


class PairDataset(torch.utils.data.Dataset):
    """``n`` training pairs with the bridge trainer's columns ``source`` and ``target`` (``(2, 1, 1)`` tensors each).

    A plain map-style data set: ``datasets``' torch formatting of such small nested rows costs far more than the
    MLP's training step.
    """

    def __init__(self, n: int, seed: int):
        _, y, x0 = draw_pairs(n, seed)
        self.source, self.target = as_images(y), as_images(x0)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"source": self.source[index], "target": self.target[index]}


class KnownCoupling:
    """Evaluation sources on an even grid of angles, and the exact metrics of generated targets for them.

    A sampler gives ``SAMPLES_PER_SOURCE`` targets ``x`` ``(n, K, 2)`` for each source. ``energy`` is the mean over
    sources of the unbiased estimate of the energy distance between the sampler's conditional and the true one,
    ``2 E|X - X*| - E|X - X'| - E|X* - X*'|``: exact in the true conditional (two weighted atoms), 0 in expectation
    for an exact sampler and positive for any other. The reference of ``swd`` is the true joint at the sources itself:
    each ``y_i`` carries its two atoms with weights ``w_i / n`` and ``(1 - w_i) / n``; each projection's 1-D W2 to the
    generated pairs is computed exactly (piecewise-constant quantile functions), and ``swd = sqrt(mean W2^2)``.

    Args:
        n (`int`): number of evaluation sources, at angles ``2 pi (i + offset) / n``.
        offset (`float`): where in its cell each angle sits (test and validation sources use different offsets).
    """

    def __init__(self, n: int, offset: float = 0.5):
        self.theta = 2 * math.pi * (torch.arange(n, dtype=torch.float64) + offset) / n
        self.y = sources(self.theta).float()
        self.atoms, self.weight = atoms(self.theta), first_mode_weight(self.theta)
        directions = torch.randn(4, SWD_PROJECTIONS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.directions = directions / directions.norm(dim=0, keepdim=True)
        y = self.y.double()
        joint = torch.cat([torch.cat([y, self.atoms[:, 0]], 1), torch.cat([y, self.atoms[:, 1]], 1)])
        projected, order = (joint @ self.directions).T.sort(1)  # (directions, 2n)
        self.reference = projected
        self.reference_levels = torch.cat([self.weight, 1 - self.weight])[order].cumsum(1) / n

    def swd(self, x: torch.Tensor) -> float:
        """Sliced W2 between the generated pairs ``(y_i, x_ik)`` and the true joint at the same sources."""
        m = x.shape[0] * x.shape[1]
        pairs = torch.cat([self.y.double().repeat_interleave(x.shape[1], 0), x.reshape(m, 2).double()], 1)
        generated = (pairs @ self.directions).T.sort(1).values
        generated_levels = torch.arange(1, m + 1, dtype=torch.float64) / m
        levels = torch.cat([generated_levels.expand(len(generated), m), self.reference_levels], 1).sort(1).values
        lower = torch.cat([torch.zeros_like(levels[:, :1]), levels[:, :-1]], 1)
        middle = ((levels + lower) / 2).contiguous()
        q_generated = generated.gather(1, (middle * m).long().clamp_max(m - 1))  # generated level k / m: index k - 1
        q_reference = self.reference.gather(1, torch.searchsorted(self.reference_levels.contiguous(),
                                                                  middle).clamp_max(self.reference.shape[1] - 1))
        return ((q_generated - q_reference).pow(2) * (levels - lower)).sum(1).mean().sqrt().item()

    def quality(self, x: torch.Tensor) -> dict[str, float]:
        """``energy``, ``error``, ``weight_error`` and ``swd`` of generated targets ``x`` ``(n, K, 2)``, ``K >= 2``."""
        x = x.double()
        distances = (x.unsqueeze(2) - self.atoms.unsqueeze(1)).norm(dim=-1)  # (n, K, 2 atoms)
        w = self.weight.unsqueeze(1)
        to_truth = (w * distances[..., 0] + (1 - w) * distances[..., 1]).mean(1)  # E|X - X*|
        within = torch.cdist(x, x).sum((1, 2)) / (x.shape[1] * (x.shape[1] - 1))  # E|X - X'|, distinct samples
        truth_spread = 2 * self.weight * (1 - self.weight) * 2 * TARGET_RADIUS  # E|X* - X*'|
        first = (distances[..., 0] < distances[..., 1]).double().mean(1)
        bins = (self.theta / (2 * math.pi) * ANGLE_BINS).long().clamp_max(ANGLE_BINS - 1)
        weight_error = [(first[bins == b].mean() - self.weight[bins == b].mean()).abs().item() for b in range(ANGLE_BINS)]
        return {"energy": (2 * to_truth - within - truth_spread).mean().item(),
                "error": distances.min(-1).values.mean().item(), "weight_error": sum(weight_error) / ANGLE_BINS,
                "swd": self.swd(x)}

    def exact_draw(self, seed: int) -> torch.Tensor:
        """``SAMPLES_PER_SOURCE`` targets a source from the true coupling (the finite-sample floor of a sampler)."""
        generator = torch.Generator().manual_seed(seed)
        return torch.stack([draw_targets(self.theta, generator) for _ in range(SAMPLES_PER_SOURCE)], 1).float()

    def margin_reference(self, seed: int, jitter: float = MARGIN_JITTER) -> float:
        """The ``energy`` increase caused by jittering an exact draw by ``N(0, jitter^2 I)`` (the margin's yardstick)."""
        exact = self.exact_draw(seed)
        noise = torch.randn(exact.shape, generator=torch.Generator().manual_seed(seed + 1))
        return self.quality(exact + jitter * noise)["energy"] - self.quality(exact)["energy"]


# ---------------------------------------------------------------------------------------------------- model


class PointBridgeMLP(ModelMixin, ConfigMixin):
    r"""The bridge network ``F([c_in x_t, y], c_noise)`` for 2-D points, in the UNet's interface.

    Points travel as ``(B, 2, 1, 1)`` images (what `BridgeTrainer` and `ConsistencyBridgePipeline` pass), so the
    config carries the UNet fields they read (``in_channels = 2 * out_channels``, ``sample_size = 1``) and the output
    is a `UNet2DOutput`. The time input ``c_noise = 250 log t`` enters through sinusoidal features of ``log t``.

    Args:
        in_channels (`int`): ``[x_t, y]`` channels (4). out_channels (`int`): 2. sample_size (`int`): 1.
        hidden (`int`): width of the hidden layers. depth (`int`): number of hidden layers.
        time_features (`int`): number of sinusoidal features of ``log t`` (half sines, half cosines).
    """

    @register_to_config
    def __init__(self, in_channels: int = 4, out_channels: int = 2, sample_size: int = 1, hidden: int = 128,
                 depth: int = 3, time_features: int = 32):
        super().__init__()
        self.register_buffer("frequencies", torch.logspace(-1, 1.5, time_features // 2), persistent=False)
        layers, width = [], in_channels + time_features
        for _ in range(depth):
            layers += [torch.nn.Linear(width, hidden), torch.nn.SiLU()]
            width = hidden
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, out_channels))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> UNet2DOutput:
        log_t = (timestep.to(sample.dtype) / 250.0).reshape(-1, 1).expand(sample.shape[0], 1)
        angles = log_t * self.frequencies.to(sample.dtype)
        features = torch.cat([sample.flatten(1), angles.sin(), angles.cos()], dim=1)
        return UNet2DOutput(sample=self.net(features).reshape(sample.shape[0], -1, 1, 1))


# ------------------------------------------------------------------------------------------------- training


def _training_args(config_class, output_dir, steps, lr, batch_size, seed, device, **extra):
    return config_class(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
        lr_scheduler_type="cosine", warmup_steps=min(100, steps // 10), weight_decay=0.0, save_strategy="no",
        logging_steps=max(1, steps // 5), report_to=[], seed=seed, dataloader_num_workers=0, disable_tqdm=True,
        use_cpu=torch.device(device).type == "cpu", **extra,
    )


def train_teacher(dataset, output_dir, steps, lr, batch_size, seed, device, hidden):
    """A DDBM teacher (VP bridge, DDBM preconditioning) on an MLP; returns the trainer."""
    from hfgen.trainers import BridgeConfig, BridgeTrainer

    torch.manual_seed(seed)
    args = _training_args(BridgeConfig, output_dir, steps, lr, batch_size, seed, device)
    trainer = BridgeTrainer(PointBridgeMLP(hidden=hidden), args, train_dataset=dataset)
    trainer.train()
    return trainer


def train_student(teacher, mode, dataset, output_dir, steps, lr, batch_size, seed, device):
    """CBD (``mode="distillation"``) or CBT (``"training"``) initialised from the teacher; returns the trainer."""
    from hfgen.trainers import ConsistencyBridgeConfig, ConsistencyBridgeTrainer

    args = _training_args(ConsistencyBridgeConfig, output_dir, steps, lr, batch_size, seed, device, mode=mode,
                          time_schedule="sigmoid", sigmoid_b=20.0, stage_steps=max(1, steps // 3))
    student = copy.deepcopy(teacher).requires_grad_(True)
    trainer = ConsistencyBridgeTrainer(student, args, teacher=teacher if mode == "distillation" else None,
                                       train_dataset=dataset)
    trainer.train()
    return trainer


# ----------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def translate(pipe, y: torch.Tensor, solver: str, steps: int, seed: int, device: str) -> tuple[torch.Tensor, int, float]:
    """``SAMPLES_PER_SOURCE`` targets for each source ``y`` ``(n, 2)`` by ``solver`` with ``steps``: ``(x (n, K, 2) on
    the CPU, NFE, seconds)``."""
    from hfgen.pipelines import BridgeScheduler

    pipe.scheduler = BridgeScheduler.from_config(pipe.scheduler.config, solver=solver, eta=0.0 if solver == "dbim" else 1.0)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    start = time.perf_counter()
    out = pipe((as_images(y) + 1) / 2, num_inference_steps=steps, num_images_per_prompt=SAMPLES_PER_SOURCE,
               generator=torch.Generator().manual_seed(seed), output_type="latent")
    seconds = time.perf_counter() - start
    return out.images.float().cpu().reshape(len(y), SAMPLES_PER_SOURCE, 2), out.nfe, seconds


def select(candidates, validation: KnownCoupling, seed, device):
    """The candidate ``(lr, trainer, solver, steps)`` whose sampler has the lowest validation energy; ``(lr, trainer,
    {lr: energy})``."""
    scores = {}
    for lr, trainer, solver, steps in candidates:
        x, _, _ = translate(trainer.pipeline(), validation.y, solver, steps, seed, device)
        scores[lr] = validation.quality(x)["energy"]
    best = min(scores, key=scores.get)
    return best, next(trainer for lr, trainer, _, _ in candidates if lr == best), scores


def run_seed(seed, args, validation, test, metrics, scores):
    """Train the teacher and both students of one seed (each picking its lr on ``validation``) and evaluate every
    sampler on ``test``; appends one value per arm and metric to ``metrics`` (the chosen lr among them) and each
    model's validation energy per lr to ``scores``."""
    device, work = args.device, Path(args.work_dir) / f"seed{seed}"
    dataset = PairDataset(args.n_train, seed)
    select_seed = 50_000 + seed  # the sampling seed of validation, apart from the test sampling seed
    candidates = [(lr, train_teacher(dataset, work / f"teacher_lr{lr:g}", args.teacher_steps, lr, args.batch_size,
                                     seed, device, args.hidden), "heun", max(args.heun_steps))
                  for lr in args.teacher_lrs]
    lrs = {}
    lrs["teacher"], teacher, found = select(candidates, validation, select_seed, device)
    scores.setdefault("teacher", []).append(found)
    teacher_model = teacher.accelerator.unwrap_model(teacher.model).eval()
    students = {}
    for name, mode in (("CBD", "distillation"), ("CBT", "training")):
        candidates = [(lr, train_student(teacher_model, mode, dataset, work / f"{name.lower()}_lr{lr:g}",
                                         args.student_steps, lr, args.batch_size, seed, device), "consistency", 2)
                      for lr in args.student_lrs]
        lrs[name], students[name], found = select(candidates, validation, select_seed, device)
        scores.setdefault(name, []).append(found)

    plan = [(TEACHER_HEUN, "teacher", teacher, "heun", n) for n in args.heun_steps]
    plan += [(TEACHER_DBIM, "teacher", teacher, "dbim", n) for n in args.dbim_steps]
    plan += [(f"CDBM ({name})", name, trainer, "consistency", n) for name, trainer in students.items()
             for n in args.cdbm_steps]
    for family, model, trainer, solver, steps in plan:
        x, nfe, seconds = translate(trainer.pipeline(), test.y, solver, steps, seed, device)
        arm = f"{family}, {nfe} NFE" + (", boot-only" if solver == "consistency" and steps == 1 else "")
        values = {**test.quality(x), "nfe": nfe, "seconds": seconds, "lr": lrs[model]}
        for key, value in values.items():
            metrics.setdefault(arm, {}).setdefault(key, []).append(value)
        print(json.dumps({"seed": seed, "arm": arm, **values}), flush=True)
    for key, value in {**test.quality(test.exact_draw(70_000 + seed)), "nfe": 0, "seconds": 0.0}.items():
        metrics.setdefault(EXACT, {}).setdefault(key, []).append(value)


def plot_quality_against_nfe(metrics: dict, path: Path) -> None:
    """Energy distance against NFE per sampler family: means over seeds with 95% t-interval bands; the exact
    coupling's finite-sample spread as a dashed band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict] = {}  # sampler family -> {NFE: interval of the energy distance}
    for arm, values in metrics.items():
        if arm != EXACT:
            family = arm.split(", ")[0] if arm.startswith("CDBM") else arm.rsplit(", ", 1)[0]
            curves.setdefault(family, {})[values["nfe"][0]] = interval(values["energy"])
    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    for family, by_nfe in curves.items():
        nfe = sorted(by_nfe)
        means, lows, highs = zip(*((by_nfe[n].mean, by_nfe[n].low, by_nfe[n].high) for n in nfe))
        ax.plot(nfe, means, marker="o", label=family)
        ax.fill_between(nfe, lows, highs, alpha=0.2)
    floor = interval(metrics[EXACT]["energy"])
    ax.axhline(floor.mean, color="k", linestyle="--", linewidth=1, label="exact coupling (one draw)")
    ax.axhspan(floor.low, floor.high, color="k", alpha=0.1)
    ax.set(xscale="log", xlabel="network calls (NFE; CDBM at 1 NFE = booting evaluation only)",
           ylabel="energy distance to the true conditional (lower is better)",
           title="2-D bridge, known coupling; 95% t-interval over seeds")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    """Run the study; returns ``(metrics, record path)``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--teacher-steps", type=int, default=4000)
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=16384)
    parser.add_argument("--n-validation", type=int, default=2048)
    parser.add_argument("--n-eval", type=int, default=8192)
    parser.add_argument("--teacher-lrs", type=float, nargs="+", default=list(TEACHER_LRS))
    parser.add_argument("--student-lrs", type=float, nargs="+", default=list(STUDENT_LRS))
    parser.add_argument("--heun-steps", type=int, nargs="+", default=list(HEUN_STEPS))
    parser.add_argument("--dbim-steps", type=int, nargs="+", default=list(DBIM_STEPS))
    parser.add_argument("--cdbm-steps", type=int, nargs="+", default=list(CDBM_STEPS))
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--raw-dir", type=Path, default=None, help="where the record goes (default: docs/results/raw)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/consistency_bridge_toy2d"))
    args = parser.parse_args(argv)
    if len(args.teacher_lrs) != len(args.student_lrs):
        parser.error("--teacher-lrs and --student-lrs must have the same number of values (equal tuning budgets)")
    if 2 not in args.cdbm_steps:
        parser.error("--cdbm-steps must include 2 (the claim's arm)")

    started = time.time()
    validation, test = KnownCoupling(args.n_validation, offset=0.25), KnownCoupling(args.n_eval, offset=0.5)
    metrics: dict[str, dict[str, list]] = {}
    scores: dict[str, list] = {}  # model -> per seed {lr: validation swd}
    margin_reference_values = []
    for seed in args.seeds:
        run_seed(seed, args, validation, test, metrics, scores)
        margin_reference_values.append(test.margin_reference(80_000 + seed))

    args.figures_dir.mkdir(parents=True, exist_ok=True)
    figure = args.figures_dir / "consistency_bridge_toy2d_nfe.png"
    plot_quality_against_nfe(metrics, figure)
    heun_top = f"{TEACHER_HEUN}, {3 * max(args.heun_steps) - 1} NFE"
    grid = len(args.teacher_lrs)
    teacher_budget = (f"teacher: {args.teacher_steps} steps x batch {args.batch_size}, lr grid of {grid} "
                      f"{args.teacher_lrs} chosen on validation energy of Heun at its highest NFE; the sampler: none")
    student_budget = (f"{args.student_steps} steps x batch {args.batch_size} from the teacher, lr grid of {grid} "
                      f"{args.student_lrs} chosen on validation energy at 2 NFE")
    budget = {arm: teacher_budget if arm.startswith("DDBM") else
              f"{student_budget}{', plus one teacher call a step' if 'CBD' in arm else ''}" if arm.startswith("CDBM")
              else "none: a second draw from the known coupling" for arm in metrics}
    path = write_record(
        "consistency_bridge", "toy2d", seeds=args.seeds, metrics=metrics, started=started, raw_dir=args.raw_dir,
        figures=[figure], device=args.device,
        settings={
            "data": (f"theta ~ U[0, 2pi), y = {SOURCE_RADIUS}(cos, sin)(theta); x_0 = {TARGET_RADIUS}(cos, sin)"
                     f"(2 theta + k pi), k = 0 with probability 0.5 + {WEIGHT_AMPLITUDE} cos theta; {args.n_train} "
                     f"training pairs a seed; {args.n_validation} validation and {args.n_eval} test sources on even "
                     f"grids of theta ({SAMPLES_PER_SOURCE} targets a source), the same for every seed"),
            "model": (f"MLP {PointBridgeMLP().config.depth} x {args.hidden}, SiLU, sinusoidal log-t features; VP "
                      "bridge, DDBM preconditioning"),
            "students": "CBD and CBT from each seed's teacher (sigmoid r(t), b = 20, 3 stages, stop-grad target, L2)",
            "samplers": "Heun: DDBM hybrid (churn 0.33, NFE = 3N - 1); DBIM eta = 0; CDBM: booting at T, then "
                        "consistency steps with fresh noise; the same sources and sampling seed for every sampler",
            "metrics": "energy: mean over sources of the unbiased energy distance between the sampler's conditional "
                       "(its two targets) and the true one (two weighted atoms); error: mean distance to the nearest "
                       "true atom; weight_error: mean over 8 theta bins of "
                       f"|first-atom fraction - mean w(theta)|; swd: sliced W2 ({SWD_PROJECTIONS} fixed directions) of "
                       "(y, x) to the true joint at the same y (each source's two atoms, weighted)",
            "teacher_steps": args.teacher_steps, "student_steps": args.student_steps,
            "validation_energy_by_lr": {model: [{f"{lr:g}": round(v, 4) for lr, v in found.items()} for found in per_seed]
                                     for model, per_seed in scores.items()},
            "margin_reference": margin_reference_values,
            "budget": budget, "baseline": heun_top,
            "higher_is_better": {"energy": False, "error": False, "weight_error": False, "swd": False},
            "digits": {"energy": 4, "error": 4, "weight_error": 3, "swd": 4, "seconds": 3},
            "claim": {"text": f"CDBM (CBD) at 2 NFE matches the teacher at {3 * max(args.heun_steps) - 1} NFE",
                      "arm": "CDBM (CBD), 2 NFE", "baseline": heun_top, "metric": "energy", "higher_is_better": False,
                      "margin": MARGIN},
        })
    print(f"wrote {path}")
    return metrics, path


if __name__ == "__main__":
    main()
