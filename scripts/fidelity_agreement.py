"""Measure how closely hfgen agrees with the official code on the golden tests' inputs (docs/results/fidelity.md).

Runs the comparisons of ``tests/golden/`` (masked diffusion, bridges, consistency distillation: hfgen against the
official outputs recorded in ``tests/golden/data/`` by ``scripts/golden/``): the largest absolute and relative
difference, or the number of differing tokens for samplers of discrete tokens. Float64 unless the comparison says
otherwise; all seeds are fixed. For NFT, DDO and GFT it runs their golden tests (``pytest -s``) and keeps the
``GOLDEN`` lines they print: the relative loss and gradient difference of every case (NFT and GFT DiT against
recorded official outputs, ``tests/golden/data/``; DDO and GFT SD1.5 against derivations from the papers'
equations); it compares GFT's converted DiT and its sampling with their recordings, and IISAN's in-batch loss
with its recording.

Each measured table of the page is one raw record, ``docs/results/raw/fidelity/<table>.json`` (``--raw-dir``
elsewhere), holding every comparison's raw values; ``scripts/collect_results.py`` renders the tables from them.
The rows are also printed as they are measured.

    OMP_NUM_THREADS=1 python scripts/fidelity_agreement.py [--raw-dir DIR]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from collect_results import FIDELITY_HEAD, fidelity_row  # noqa: E402

from hfgen.results import write_record  # noqa: E402
from tests.golden import test_bridge as gb  # noqa: E402
from tests.golden import test_consistency_distillation as gc  # noqa: E402
from tests.golden import test_masked_diffusion as gm  # noqa: E402
from tests.golden.recorded import load_recording  # noqa: E402


class Table:
    """One measured table of docs/results/fidelity.md: its comparisons' raw values, printed row by row as they are
    measured and written as one raw record ``fidelity/<name>``."""

    def __init__(self, name, label, *, seeds, inputs):
        self.name, self.label, self.seeds, self.inputs = name, label, list(seeds), inputs
        self.metrics, self.notes, self.cells = {}, {}, {}
        self.started = time.time()
        print(f"\n{FIDELITY_HEAD}", flush=True)

    def add(self, comparison, metrics, note="", cell=None):
        """``metrics``: metric -> list of raw values (see ``collect_results.fidelity_row`` for the names)."""
        self.metrics[comparison] = metrics
        if note:
            self.notes[comparison] = note
        if cell:
            self.cells[comparison] = cell
        print(fidelity_row(self.label, comparison, metrics, note, cell), flush=True)

    def diffs(self, comparison, ours, official, note=""):
        ours, official = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(official, dtype=torch.float64)
        abs_diff = (ours - official).abs()
        rel = abs_diff / official.abs().clamp_min(1e-12)
        self.add(comparison, {"max_abs_diff": [abs_diff.max().item()], "max_rel_diff": [rel.max().item()]}, note)

    def tokens(self, comparison, pairs, note=""):
        self.add(comparison, {"tokens_differ": [int((o != p).sum()) for o, p in pairs],
                              "tokens": [p.numel() for _, p in pairs]}, note)

    def write(self, raw_dir):
        settings = {"label": self.label, "inputs": self.inputs, "dtype": "float64 unless the comparison names another",
                    "row_notes": self.notes}
        if self.cells:
            settings["cells"] = self.cells
        path = write_record("fidelity", self.name, seeds=self.seeds, metrics=self.metrics, settings=settings,
                            started=self.started, raw_dir=raw_dir)
        print(f"record: {path}", flush=True)


GOLDEN_LINE = re.compile(r"GOLDEN (?P<method>\w+) (?P<case>.*?):? loss (?P<loss>\S+) grad (?P<grad>\S+)$")
GOLDEN_EMBEDDING = re.compile(r"GOLDEN gft embedding dim=(?P<dim>\d+): .* (?P<diff>\S+)$")
GOLDEN_GROUPS = {  # (method, first word of the case) -> the row's comparison
    ("nft", "token"): "per-token loss (`ratio_type=\"token\"`), on- and off-policy, recorded official",
    ("nft", "sequence"): "per-sequence loss (`ratio_type=\"sequence\"`), on- and off-policy, recorded official",
    ("ddo", "edm"): "EDM loss vs derivation (App. D, Eq. 13; float64)",
    ("ddo", "ar"): "autoregressive loss vs derivation (Eq. 1 + Eq. 13; float64)",
    ("ddo", "edm2"): "EDM2 learned-uncertainty loss vs derivation (float64)",
    ("ddo", "edm-loss"): "EDM likelihood proxy vs recorded official `EDMLoss` (float32)",
    ("gft", "dit"): "DiT training loss, recorded official (float64)",
    ("gft", "sd"): "SD1.5 training loss vs derivation (float64)",
}
GOLDEN_SEEDS = {"nft": [0], "ddo": [0, 1], "gft": [0, 1, 3, 7]}  # the seeds the golden test files fix
EMBEDDING_CELL = ("both forms bit-identical for float32 β, in float32, float16 and float64 models; the float64 β "
                  "that `GuidanceFreePipeline` passes gives the stock `StableDiffusionPipeline`'s embedding bit for "
                  "bit (≤ {float64_beta_max_abs_diff:.0e} from the float32-β one)")


def run_golden_tests():
    """Run the NFT, DDO and GFT golden tests; their ``GOLDEN`` lines by (method, first word of the case): a list of
    (case, loss, gradient) relative differences (loss: |ours − official| / |official|; gradient: max-abs
    normalised), and GFT's β-embedding lines by width."""
    files = [f"tests/golden/test_{name}.py" for name in ("nft", "ddo", "gft")]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *files], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if run.returncode != 0:
        raise SystemExit(f"golden tests failed:\n{run.stdout[-3000:]}")
    groups, embeddings = defaultdict(list), {}
    for line in run.stdout.splitlines():
        line = line.strip()
        if match := GOLDEN_LINE.search(line):
            key = (match["method"], match["case"].split()[0])
            groups[key].append((match["case"], float(match["loss"]), float(match["grad"])))
        elif match := GOLDEN_EMBEDDING.search(line):
            embeddings[int(match["dim"])] = float(match["diff"])
    return groups, embeddings


def golden_tables(groups, embeddings, raw_dir):
    """One table per method of the golden tests' groups of cases; GFT's gets the β embeddings and the converted DiT."""
    for method in ("nft", "ddo", "gft"):
        table = Table(method, method.upper(), seeds=GOLDEN_SEEDS[method], inputs=f"tests/golden/test_{method}.py")
        cases = {}
        for (group_method, case), comparison in GOLDEN_GROUPS.items():
            if group_method != method:
                continue
            values = groups[(method, case)]
            if not values:
                raise SystemExit(f"no GOLDEN line for {method} {case}")
            cases[comparison] = [name for name, _, _ in values]
            table.add(comparison, {"loss_rel_diff": [v[1] for v in values], "grad_rel_diff": [v[2] for v in values]})
        if method == "gft":
            if not embeddings:
                raise SystemExit("no GOLDEN line for gft embedding")
            widths = sorted(embeddings, reverse=True)
            table.add("β embeddings", {"float64_beta_max_abs_diff": [embeddings[w] for w in widths]},
                      "widths " + ", ".join(map(str, widths)), EMBEDDING_CELL)
            gft_dit_row(table)
        table.inputs = {"golden tests": table.inputs, "cases": cases}
        table.write(raw_dir)


def gft_dit_row(table):
    """The converted official GFT DiT against its recorded outputs (with β, without β, raw weights) and
    `GuidanceFreePipeline` around it against the recorded official sampler (guidance-free, CFG with and without β),
    as ``tests/test_convert_gft_dit.py`` and ``tests/test_gft_dit_pipeline.py`` run them."""
    from hfgen.convert import convert
    from tests import test_gft_dit_pipeline as gp
    from tests.test_convert_gft_dit import recorded_dit

    states, (x, t, y, beta), official, _ = recorded_dit()
    sampled, _ = load_recording("gft", "dit_sampling")
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(states, Path(tmp) / "gft.pt")
        torch.save({k: v for k, v in states["ema"].items() if k != "t_embedder.cond_proj.weight"}, Path(tmp) / "plain.pt")
        dit = convert("gft-dit", Path(tmp) / "gft.pt", num_heads=2)
        raw = convert("gft-dit", Path(tmp) / "gft.pt", num_heads=2, use_ema=False)
        plain = convert("gft-dit", Path(tmp) / "plain.pt", num_heads=2)
    with torch.no_grad():
        pairs = [(dit(x, t, class_labels=y, beta=beta).sample, official["ema_with_beta"]),
                 (dit(x, t, class_labels=y).sample, official["ema_without_beta"]),
                 (raw(x, t, class_labels=y, beta=0.3).sample, official["raw_beta_0_3"])]
    pairs += [(gp.sample(gp.pipeline(dit), beta=1 / 1.5), sampled["free"]),
              (gp.sample(gp.pipeline(dit), guidance="cfg", guidance_scale=1.5), sampled["cfg_beta_one"]),
              (gp.sample(gp.pipeline(plain), guidance="cfg", guidance_scale=1.5), sampled["cfg_without_beta"])]
    table.add("DiT converter parity and DiT sampling (float32)",
              {"max_abs_diff": [(ours - recorded).abs().max().item() for ours, recorded in pairs]},
              "with β, without β, raw weights; guidance-free and CFG sampling")


def iisan_table(raw_dir):
    """hfgen's in-batch loss (``negatives="slots"``) and its gradients against the recorded official IISAN loss."""
    from hfgen.trainers.sequential_rec import in_batch_softmax_loss
    from tests.test_iisan import official_loss_inputs

    table = Table("iisan", "IISAN", seeds=[0], inputs="tests/test_iisan.py::official_loss_inputs")
    recorded, _ = load_recording("iisan", "inbatch_loss")
    inputs = official_loss_inputs()
    ids = inputs["ids"]
    cand, inverse = torch.unique(ids, return_inverse=True)
    users = inputs["users"].clone().requires_grad_(True)
    items = inputs["item_embs"].clone().requires_grad_(True)
    loss = in_batch_softmax_loss(users, ids, cand, inverse, items, inputs["pop_prob_list"].log(), negatives="slots")
    grad_users, grad_items = torch.autograd.grad(loss, [users, items])
    official_items = torch.zeros_like(grad_items).index_add(0, inverse.reshape(-1), recorded["grad_slot_embs"])
    grad = max(((grad_users - recorded["grad_users"]).abs().max() / recorded["grad_users"].abs().max()).item(),
               ((grad_items - official_items).abs().max() / official_items.abs().max()).item())
    table.add("in-batch loss (`negatives=\"slots\"`), recorded official (float32)",
              {"loss_rel_diff": [abs(loss.item() - recorded["loss"].item()) / abs(recorded["loss"].item())],
               "grad_rel_diff": [grad]}, "3 users, 4 slots")
    table.write(raw_dir)


def masked_diffusion_table(raw_dir):
    table = Table("masked_diffusion", "masked diffusion", seeds=[0, 1], inputs="tests/golden/test_masked_diffusion.py")
    for dtype in ("float64", "float32"):
        pairs = []
        for steps in (5, 40):
            with gm.shared_uniforms() as q:
                pairs.append(gm.ancestral_pair(q, dtype, steps))
        table.tokens(f"ancestral step vs MDLM `_ddpm_update` ({dtype})", pairs, "T = 5 and 40, 8 rows")
    for dtype in ("float64", "float32"):
        pairs, times = [], []
        for schedule in ("linear", "loglinear"):
            for seed in (0, 1):
                with gm.shared_uniforms() as q:
                    ours, official, t_ours, t_official = gm.first_hitting_pair(q, schedule, dtype, seed)
                pairs.append((ours, official))
                times.append((t_ours, t_official))
        table.tokens(f"first-hitting tokens vs BD3-LM ({dtype})", pairs, "linear + loglinear, 2 seeds")
        if dtype == "float64":
            table.diffs("first-hitting times vs BD3-LM `t *= u**(1/n)`",
                        torch.cat([a for a, _ in times]), torch.cat([b for _, b in times]))
    table.write(raw_dir)


def bridges_table(raw_dir):
    table = Table("bridges", "bridges", seeds=[0, 5], inputs="tests/golden/test_bridge.py")
    schedules, _ = load_recording("diffusion_bridge", "schedules")
    for name in ("vp", "ve"):
        ours, t = gb.make_bridge_schedule(name), schedules[f"{name}.t"]
        table.diffs(f"{name.upper()} schedule a_t, b_t, c_t", torch.stack(ours.abc(t)), schedules[f"{name}.abc"],
                    "258 times in [1e-4, T - 1e-6]")
        sched = gb.BridgeScheduler(noise_schedule=name, sigma_data=0.5, cov_xy=0.125)
        official = [schedules[f"{name}.precond.0.5.0.125.{part}"] for part in ("c_skip", "c_out", "c_in")]
        table.diffs(f"{name.upper()} DDBM preconditioning c_skip, c_out, c_in",
                    torch.stack(sched.scalings(t, consistency=False)), torch.stack(official),
                    "sigma_data 0.5, cov_xy 0.125")
        with tempfile.TemporaryDirectory() as tmp:
            loss, official_loss, grad, official_grad = gb.loss_pair(name, tmp)
        table.diffs(f"{name.upper()} training loss", loss, official_loss)
        table.add(f"{name.upper()} training-loss gradient",
                  {"max_abs_diff": [(grad - official_grad).abs().max().item()],
                   "max_rel_norm_diff": [((grad - official_grad).norm() / official_grad.norm()).item()]},
                  "tiny UNet2DModel")
        for eta in (0.0, 0.5, 1.0):
            ours, official, _, _ = gb.dbim_pair(name, eta, 4)
            table.diffs(f"{name.upper()} `sample_dbim`, eta = {eta}", ours, official, "5 NFE")
        for churn in (0.0, 0.33):
            ours, official, _, _ = gb.heun_pair(name, churn)
            table.diffs(f"{name.upper()} `sample_heun`, churn = {churn}", ours, official, "5 steps")
    table.write(raw_dir)


def consistency_distillation_table(raw_dir):
    table = Table("consistency_distillation", "consistency distillation", seeds=[0],
                  inputs="tests/golden/test_consistency_distillation.py")
    student, _ = load_recording("ctm", "student")
    for preconditioning in ("euler", "variance"):
        f, g = gc.outer_scalings(student["t"], student["s"], preconditioning, gc.SIGMA_DATA, gc.SIGMA_MIN)
        table.diffs(f"outer scalings f, g ({preconditioning})", torch.stack([f, g]),
                    torch.stack([student[f"{preconditioning}.c_skip"], student[f"{preconditioning}.c_out"]]),
                    "400 (t, s) pairs")
        with tempfile.TemporaryDirectory() as tmp:
            ours, official, _ = gc.student_pair(preconditioning, tmp)
        table.diffs(f"student output G(x_t, t, s) ({preconditioning})", ours, official)
    table.write(raw_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", default=None, help="where the records go (default: docs/results/raw)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    masked_diffusion_table(args.raw_dir)
    bridges_table(args.raw_dir)
    consistency_distillation_table(args.raw_dir)
    golden_tables(*run_golden_tests(), args.raw_dir)
    iisan_table(args.raw_dir)


if __name__ == "__main__":
    main()
