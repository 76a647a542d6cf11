"""Golden tests: hfgen's consistency trajectory student against recorded outputs of the official CTM code (sony/ctm).

``scripts/golden/record_ctm.py`` ran CTM's ``KarrasDenoiser`` scalings and ``get_denoised_and_G(ctm=True)`` through
the student branch of ``EDMPrecond_CTM.forward`` (from a checkout; provenance in
``tests/golden/data/ctm/student.provenance.json``) on the toy student defined here and fixed ``(x_t, t, s)``, in
float64, for ``outer_parametrization="euler"`` (CTM's default) and ``"variance"``. hfgen's public path
(``outer_scalings``, ``ConsistencyTrajectoryScheduler`` and ``ConsistencyDistillationTrainer.trajectory``) gets
the same student weights and inputs. The network rounds its inputs to float32 on both sides (hfgen hands it
float32 ``c_noise``; CTM hands float64 ``log(t) / 4`` and ``x`` cast to float32).

Broken-variant checks (run once, then restored):
- ``"variance"`` outer ``c_skip`` without the ``- sigma_min`` shift (``(s^2 + sd^2) / (t^2 + sd^2)``) in
  ``outer_scalings``: both variance cases fail, max rel diff of ``f`` 1.9e-3, max abs diff of the student
  output 4.6e-3.
- EDM inner ``c_out = t sd / (t^2 + sd^2)`` (no square root) in ``ConsistencyTrajectoryScheduler.precondition_outputs``:
  both student-output cases fail, max abs diff 0.91.
"""

import pytest
import torch
from transformers.utils import ModelOutput

from hfgen.pipelines.consistency_trajectory import ConsistencyTrajectoryScheduler
from hfgen.pipelines.consistency_trajectory.scheduling_consistency_trajectory import outer_scalings

from .recorded import load_recording

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.002, 80.0, 0.5


def time_pairs(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_t = torch.rand(n, generator=g, dtype=torch.float64) * (torch.log(torch.tensor(SIGMA_MAX / SIGMA_MIN))) + torch.log(
        torch.tensor(SIGMA_MIN, dtype=torch.float64))
    t = log_t.exp()
    s = SIGMA_MIN + (t - SIGMA_MIN) * torch.rand(n, generator=g, dtype=torch.float64)  # sigma_min <= s <= t
    s[:5] = t[:5]  # the boundary s = t
    s[5:10] = SIGMA_MIN
    return t, s


def rel(a, b):
    return ((a - b).abs() / b.abs().clamp_min(1e-300)).max().item()


@pytest.mark.parametrize("preconditioning", ["euler", "variance"])
def test_scalings_match_ctm(preconditioning):
    recording, _ = load_recording("ctm", "student")
    t, s = recording["t"], recording["s"]
    f, g = outer_scalings(t, s, preconditioning, SIGMA_DATA, SIGMA_MIN)
    assert rel(f, recording[f"{preconditioning}.c_skip"]) < 1e-14
    assert (g - recording[f"{preconditioning}.c_out"]).abs().max().item() < 1e-15
    sched = ConsistencyTrajectoryScheduler(preconditioning=preconditioning)
    ones = torch.ones(len(t), 3, dtype=torch.float64)
    assert rel(sched.scale_model_input(ones, t)[:, 0], recording["c_in"]) < 1e-14
    # the network's time input: CTM's rescaling round trip, log(exp(250 log t / 250) - 1e-44) / 4
    official_c_noise = recording["c_noise"]
    assert (sched.c_noise(t).double() - official_c_noise).abs().max().item() < 1e-6  # hfgen's is float32
    torch.testing.assert_close(sched.c_noise(t), official_c_noise.float(), rtol=0, atol=0)


class ToyStudent(torch.nn.Module):
    """``F(c_in x, c_noise(t), c_noise(s))``; all inputs rounded to float32 as a float32 network would (CTM's
    ``EDMPrecond_CTM`` hands its network ``x`` in float32)."""

    def __init__(self, dim=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.nn.Parameter(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        self.b, self.c = (torch.nn.Parameter(torch.randn(dim, generator=g, dtype=torch.float64)) for _ in range(2))

    def net(self, x, c_t, c_s):
        x, c_t, c_s = x.float().double(), c_t.float().double()[:, None], c_s.float().double()[:, None]
        return torch.tanh(x @ self.A + self.b * c_t + self.c * torch.sin(3 * c_s)) * 2

    def forward(self, x, c_t, c_s):  # hfgen's TrajectoryMLP interface
        return ModelOutput(sample=self.net(x, c_t, c_s))


def student_pair(preconditioning, output_dir):
    """``(hfgen G, CTM's recorded G, x_t)`` on the same student, ``x_t``, ``t`` and ``s``."""
    from trainers.consistency_distillation import ConsistencyDistillationConfig, ConsistencyDistillationTrainer

    recording, _ = load_recording("ctm", "student")
    student = ToyStudent()
    student.load_state_dict({k.removeprefix("student."): v for k, v in recording.items() if k.startswith("student.")})
    args = ConsistencyDistillationConfig(output_dir=str(output_dir), preconditioning=preconditioning, sigma_min=SIGMA_MIN,
                                         sigma_max=SIGMA_MAX, sigma_data=SIGMA_DATA, report_to=[], use_cpu=True,
                                         num_discretization_steps=4)
    trainer = ConsistencyDistillationTrainer(student, args, teacher=torch.nn.Identity())
    x_t = recording["x_t"]
    ours = trainer.trajectory(student, x_t, recording["t"], recording["s"])
    return ours, recording[f"{preconditioning}.G"], x_t


@pytest.mark.parametrize("preconditioning", ["euler", "variance"])
def test_student_output_matches_get_denoised_and_G(preconditioning, tmp_path):
    ours, official, x_t = student_pair(preconditioning, tmp_path)
    torch.testing.assert_close(ours, official, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[:5], x_t[:5], rtol=0, atol=1e-12)  # G(x, t, t) = x
