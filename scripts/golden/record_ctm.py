"""Record sony/ctm's student parameterisation for hfgen's golden tests (``tests/golden/data/ctm/``).

    git clone https://github.com/sony/ctm /tmp/ctm   # or any snapshot of it
    OMP_NUM_THREADS=1 python scripts/golden/record_ctm.py --checkout /tmp/ctm [--commit SHA]

What runs from the checkout (``code/``), unchanged:
- ``cm/karras_diffusion.py``: ``KarrasDenoiser.get_c_in``, ``get_outer_scalings`` (``euler`` and ``variance``),
  ``rescaling_t``, and ``get_denoised_and_G(..., ctm=True)`` (with ``get_inner_scalings``/``get_edm_scalings``,
  ``get_denoised``; ``target_subtract=False``, ``inner_parametrization='edm'``, the defaults of ``script_util.py``);
- ``cm/networks.py``: the student branch of ``EDMPrecond_CTM.forward`` (it undoes ``rescaling_t`` and hands
  ``log(t) / 4``, ``log(s) / 4`` and ``x`` cast to float32 to the network).

``KarrasDenoiser`` and ``EDMPrecond_CTM`` are made with ``__new__`` and hold only the attributes those methods read
(``args``; ``teacher=False``, ``label_dim=0``, ``use_fp16=False``, ``model``): their constructors build samplers,
feature extractors and a SongUNet that these functions never touch. The network is the toy student of
``tests/golden/test_consistency_distillation.py`` (``ToyStudent``, seed 0, weights recorded): it rounds its inputs
to float32, as a float32 network does, so the comparison holds at float64 precision everywhere else.

Stand-ins (written here) for modules ``karras_diffusion.py`` imports only for training and evaluation:
``blobfile``, ``cm.dist_util``, ``cm.script_util`` (it imports ``torchvision``), ``cm.enc_dec_lib`` (``torchvision``
and the GAN feature networks; the names ``get_xl_feature``, ``gaussian_blur``, never called here).
"""

import torch
from _common import arguments, stand_in, write

args = arguments(__doc__.splitlines()[0], "sony/ctm")
import sys  # noqa: E402

sys.path.insert(0, str(args.checkout / "code"))
from tests.golden.test_consistency_distillation import SIGMA_DATA, SIGMA_MIN, ToyStudent, time_pairs  # noqa: E402

stand_in("blobfile")
stand_in("cm.dist_util", dev=lambda: torch.device("cpu"))
stand_in("cm.script_util")
stand_in("cm.enc_dec_lib", get_xl_feature=None, gaussian_blur=None)
import cm  # noqa: E402  (the checkout's package, whose stand-in submodules are registered above)

cm.__path__ = [str(args.checkout / "code" / "cm")]
from cm import karras_diffusion, networks  # noqa: E402


class Namespace:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def denoiser(preconditioning):
    official = karras_diffusion.KarrasDenoiser.__new__(karras_diffusion.KarrasDenoiser)
    official.args = Namespace(sigma_data=SIGMA_DATA, sigma_min=SIGMA_MIN, outer_parametrization=preconditioning,
                              inner_parametrization="edm", target_subtract=False)
    return official


def precond(network):
    official = networks.EDMPrecond_CTM.__new__(networks.EDMPrecond_CTM)
    torch.nn.Module.__init__(official)
    official.teacher, official.label_dim, official.use_fp16, official.sigma_data = False, 0, False, SIGMA_DATA
    official.model = network
    return official


def main():
    t, s = time_pairs()
    x_t = t[:, None] * torch.randn(len(t), 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    student = ToyStudent()
    tensors = {"t": t, "s": s, "x_t": x_t, **{f"student.{k}": v for k, v in student.state_dict().items()}}
    seen = {}

    def network_time(x, c_t, c_s, class_labels=None):
        seen["c_noise"] = c_t
        return x

    precond(network_time)(x_t, denoiser("euler").rescaling_t(t), s=None)
    tensors["c_noise"] = seen["c_noise"]  # the network's time input for t: log(unrescaling_t(rescaling_t(t))) / 4
    tensors["c_in"] = denoiser("euler").get_c_in(t)
    for preconditioning in ("euler", "variance"):
        official = denoiser(preconditioning)
        c_skip, c_out = official.get_outer_scalings(t, s, preconditioning)
        network = precond(lambda x, c_t, c_s, class_labels=None: student.net(x, c_t, c_s))
        with torch.no_grad():
            _, G = official.get_denoised_and_G(network, x_t, t, s=s, ctm=True)
        tensors.update({f"{preconditioning}.c_skip": c_skip, f"{preconditioning}.c_out": c_out, f"{preconditioning}.G": G})
    write(args, "ctm", "student", tensors, file="code/cm/karras_diffusion.py, code/cm/networks.py",
          function="KarrasDenoiser.get_c_in, get_outer_scalings, rescaling_t, get_denoised_and_G(ctm=True); "
                   "EDMPrecond_CTM.forward (student branch)",
          seeds={"torch.Generator of the (t, s) pairs (test_consistency_distillation.time_pairs)": 0,
                 "torch.Generator of x_t / t": 1,
                 "toy student (tests/golden/test_consistency_distillation.py ToyStudent)": 0})


main()
