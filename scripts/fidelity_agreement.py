"""Measure how closely hfgen agrees with the official code on the golden tests' inputs (docs/results/fidelity.md).

Runs the comparisons of ``tests/golden/`` (masked diffusion, bridges, consistency distillation: hfgen against the
official outputs recorded in ``tests/golden/data/`` by ``scripts/golden/``) and prints one Markdown row per comparison: the largest absolute and relative difference, or the number of differing
tokens for samplers of discrete tokens. Float64 unless the row says otherwise; all seeds are fixed.
For NFT, DDO and GFT it runs their golden tests (``pytest -s``) and summarises the ``GOLDEN`` lines they print:
the largest relative loss and gradient difference over each group of cases (NFT and GFT DiT against recorded
official outputs, ``tests/golden/data/``; DDO and GFT SD1.5 against derivations from the papers' equations), and
compares IISAN's in-batch loss with its recording.

    python scripts/fidelity_agreement.py
"""

import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.golden import test_bridge as gb  # noqa: E402
from tests.golden import test_consistency_distillation as gc  # noqa: E402
from tests.golden import test_masked_diffusion as gm  # noqa: E402
from tests.golden.recorded import load_recording  # noqa: E402


def diffs(ours, official):
    ours, official = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(official, dtype=torch.float64)
    abs_diff = (ours - official).abs()
    rel = abs_diff / official.abs().clamp_min(1e-12)
    return f"{abs_diff.max().item():.1e}", f"{rel.max().item():.1e}"


def row(method, what, ours, official, note=""):
    a, r = diffs(ours, official)
    print(f"| {method} | {what} | {a} | {r} | {note} |", flush=True)


def tokens_row(method, what, pairs, note=""):
    differ = sum(int((o != p).sum()) for o, p in pairs)
    total = sum(p.numel() for _, p in pairs)
    print(f"| {method} | {what} | {differ} of {total} tokens differ | | {note} |", flush=True)


GOLDEN_LINE = re.compile(r"GOLDEN (?P<method>\w+) (?P<case>.*?):? loss (?P<loss>\S+) grad (?P<grad>\S+)$")
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


def golden_test_rows():
    """Run the NFT, DDO and GFT golden tests and print, per group of cases, the largest relative differences
    their ``GOLDEN`` lines report (loss: |ours − official| / |official|; gradient: max-abs normalised)."""
    files = [f"tests/golden/test_{name}.py" for name in ("nft", "ddo", "gft")]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *files], cwd=ROOT,
                         capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    if run.returncode != 0:
        raise SystemExit(f"golden tests failed:\n{run.stdout[-3000:]}")
    groups = defaultdict(list)
    for line in run.stdout.splitlines():
        match = GOLDEN_LINE.search(line.strip())
        if match:
            key = (match["method"], match["case"].split()[0])
            groups[key].append((float(match["loss"]), float(match["grad"])))
    for (method, case), what in GOLDEN_GROUPS.items():
        values = groups[(method, case)]
        if not values:
            raise SystemExit(f"no GOLDEN line for {method} {case}")
        loss, grad = max(v[0] for v in values), max(v[1] for v in values)
        print(f"| {method.upper()} | {what} | | loss {loss:.1e}, gradient {grad:.1e} | {len(values)} case{'s' if len(values) > 1 else ''} |", flush=True)


def iisan_row():
    """hfgen's in-batch loss (``negatives="slots"``) and its gradients against the recorded official IISAN loss."""
    from hfgen.trainers.sequential_rec import in_batch_softmax_loss
    from tests.golden.recorded import load_recording
    from tests.test_iisan import official_loss_inputs

    recorded, _ = load_recording("iisan", "inbatch_loss")
    inputs = official_loss_inputs()
    ids = inputs["ids"]
    cand, inverse = torch.unique(ids, return_inverse=True)
    users = inputs["users"].clone().requires_grad_(True)
    items = inputs["item_embs"].clone().requires_grad_(True)
    loss = in_batch_softmax_loss(users, ids, cand, inverse, items, inputs["pop_prob_list"].log(), negatives="slots")
    grad_users, grad_items = torch.autograd.grad(loss, [users, items])
    official_items = torch.zeros_like(grad_items).index_add(0, inverse.reshape(-1), recorded["grad_slot_embs"])
    rel = max(((grad_users - recorded["grad_users"]).abs().max() / recorded["grad_users"].abs().max()).item(),
              ((grad_items - official_items).abs().max() / official_items.abs().max()).item())
    print(f"| IISAN | in-batch loss (`negatives=\"slots\"`), recorded official (float32) | | loss "
          f"{abs(loss.item() - recorded['loss'].item()) / abs(recorded['loss'].item()):.1e}, gradient {rel:.1e} | "
          f"3 users, 4 slots |", flush=True)


def main():
    torch.set_num_threads(1)
    print("| method | comparison | max abs diff | max rel diff | note |")
    print("|---|---|---|---|---|")
    for dtype in ("float64", "float32"):
        pairs = []
        for steps in (5, 40):
            with gm.shared_uniforms() as q:
                pairs.append(gm.ancestral_pair(q, dtype, steps))
        tokens_row("masked diffusion", f"ancestral step vs MDLM `_ddpm_update` ({dtype})", pairs, "T = 5 and 40, 8 rows")
    for dtype in ("float64", "float32"):
        pairs, times = [], []
        for schedule in ("linear", "loglinear"):
            for seed in (0, 1):
                with gm.shared_uniforms() as q:
                    ours, official, t_ours, t_official = gm.first_hitting_pair(q, schedule, dtype, seed)
                pairs.append((ours, official))
                times.append((t_ours, t_official))
        tokens_row("masked diffusion", f"first-hitting tokens vs BD3-LM ({dtype})", pairs, "linear + loglinear, 2 seeds")
        if dtype == "float64":
            row("masked diffusion", "first-hitting times vs BD3-LM `t *= u**(1/n)`",
                torch.cat([a for a, _ in times]), torch.cat([b for _, b in times]))

    schedules, _ = load_recording("diffusion_bridge", "schedules")
    for name in ("vp", "ve"):
        ours, t = gb.make_bridge_schedule(name), schedules[f"{name}.t"]
        row("bridges", f"{name.upper()} schedule a_t, b_t, c_t", torch.stack(ours.abc(t)), schedules[f"{name}.abc"],
            "258 times in [1e-4, T - 1e-6]")
        sched = gb.BridgeScheduler(noise_schedule=name, sigma_data=0.5, cov_xy=0.125)
        official = [schedules[f"{name}.precond.0.5.0.125.{part}"] for part in ("c_skip", "c_out", "c_in")]
        row("bridges", f"{name.upper()} DDBM preconditioning c_skip, c_out, c_in", torch.stack(sched.scalings(t, consistency=False)),
            torch.stack(official), "sigma_data 0.5, cov_xy 0.125")
        with tempfile.TemporaryDirectory() as tmp:
            loss, official_loss, grad, official_grad = gb.loss_pair(name, tmp)
        row("bridges", f"{name.upper()} training loss", loss, official_loss)
        rel = ((grad - official_grad).norm() / official_grad.norm()).item()
        print(f"| bridges | {name.upper()} training-loss gradient | {(grad - official_grad).abs().max().item():.1e} | "
              f"{rel:.1e} (norm) | tiny UNet2DModel |", flush=True)
        for eta in (0.0, 0.5, 1.0):
            ours, official, _, _ = gb.dbim_pair(name, eta, 4)
            row("bridges", f"{name.upper()} `sample_dbim`, eta = {eta}", ours, official, "5 NFE")
        for churn in (0.0, 0.33):
            ours, official, _, _ = gb.heun_pair(name, churn)
            row("bridges", f"{name.upper()} `sample_heun`, churn = {churn}", ours, official, "5 steps")

    student, _ = load_recording("ctm", "student")
    for preconditioning in ("euler", "variance"):
        f, g = gc.outer_scalings(student["t"], student["s"], preconditioning, gc.SIGMA_DATA, gc.SIGMA_MIN)
        row("consistency distillation", f"outer scalings f, g ({preconditioning})", torch.stack([f, g]),
            torch.stack([student[f"{preconditioning}.c_skip"], student[f"{preconditioning}.c_out"]]), "400 (t, s) pairs")
        with tempfile.TemporaryDirectory() as tmp:
            ours, official, _ = gc.student_pair(preconditioning, tmp)
        row("consistency distillation", f"student output G(x_t, t, s) ({preconditioning})", ours, official)

    golden_test_rows()
    iisan_row()


if __name__ == "__main__":
    main()
