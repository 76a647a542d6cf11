"""Transcription of CTM's student parameterisation (sony/ctm) for the golden tests (test fixture, not library code).

Source: sony/ctm @ 87cca3be93df8dc1e6797175bf4f404dfb536f28
- ``code/cm/karras_diffusion.py``: ``KarrasDenoiser.get_c_in`` (L62-63), ``get_inner_scalings`` (L65-72),
  ``get_outer_scalings`` (L74-85), ``get_edm_scalings`` (L87-90), ``rescaling_t`` (L115-117), the ``ctm``
  branch of ``get_denoised_and_G`` (L297-329, with ``target_subtract=False``, the default of
  ``script_util.py``).
- ``code/cm/networks.py``: the student branch of ``EDMPrecond_CTM.forward`` (L856-878): it undoes
  ``rescaling_t`` and hands ``log(t) / 4`` and ``log(s) / 4`` to the network.

Mechanical changes: ``self.args`` fields are arguments; the student network ``net(x, c_t, c_s)`` is passed
in; ``EDMPrecond_CTM`` casts ``x`` to float32 (``use_fp16=False``), here to ``dtype`` (float64 in the tests,
to compare at float64 precision); only the branches the tests use are kept (``get_inner_scalings`` drops
``'cm'``). The arithmetic is unchanged.
"""

import torch


def append_dims(x, target_dims):
    dims_to_append = target_dims - x.ndim
    return x[(...,) + (None,) * dims_to_append]


class CTMArgs:
    def __init__(self, sigma_data=0.5, sigma_min=0.002, outer_parametrization="euler", inner_parametrization="edm"):
        self.sigma_data, self.sigma_min = sigma_data, sigma_min
        self.outer_parametrization, self.inner_parametrization = outer_parametrization, inner_parametrization


def get_c_in(args, sigma):
    return 1 / (sigma**2 + args.sigma_data**2) ** 0.5


def get_edm_scalings(args, sigma):
    c_skip = args.sigma_data**2 / (sigma**2 + args.sigma_data**2)
    c_out = sigma * args.sigma_data / (sigma**2 + args.sigma_data**2) ** 0.5
    return c_skip, c_out


def get_inner_scalings(args, t, inner_parametrization='no'):
    if inner_parametrization == 'edm':
        c_skip, c_out = get_edm_scalings(args, t)
    elif inner_parametrization == 'no':
        c_skip, c_out = torch.zeros_like(t), torch.ones_like(t)
    else:
        raise NotImplementedError
    return c_skip, c_out


def get_outer_scalings(args, t, s=None, outer_parametrization='euler'):
    if outer_parametrization == 'euler':
        c_skip = s / t
    elif outer_parametrization == 'variance':
        c_skip = (((s - args.sigma_min) ** 2 + args.sigma_data ** 2) / (
                    (t - args.sigma_min) ** 2 + args.sigma_data ** 2)).sqrt()
    elif outer_parametrization == 'euler_variance_mixed':
        c_skip = s / (t + 1.) + \
                 (((s - args.sigma_min) ** 2 + args.sigma_data ** 2) /
                  ((t - args.sigma_min) ** 2 + args.sigma_data ** 2)).sqrt() / (t + 1.)
    c_out = (1. - s / t)
    return c_skip, c_out


def rescaling_t(t):
    rescaled_t = 1000 * 0.25 * torch.log(t + 1e-44)
    return rescaled_t


def unrescaling_t(rescaled_t):
    return torch.exp(rescaled_t / 250.) - 1e-44


def edm_precond_ctm_student(net, rescaled_x, rescaled_t, s=None, dtype=torch.float32):
    """The student branch of ``EDMPrecond_CTM.forward``."""
    t = unrescaling_t(rescaled_t)
    t = t.log() / 4
    if s is not None:
        s = unrescaling_t(s)
        s = s.log() / 4
    return net(rescaled_x.to(dtype), t.flatten(), None if s is None else s.flatten())


def get_denoised_and_G(args, model, x_t, t, s):
    """``get_denoised_and_G(..., ctm=True)`` with ``target_subtract=False``; returns ``G_theta``."""
    rescaled_t = rescaling_t(t)
    rescaled_s = rescaling_t(s)
    c_in = append_dims(get_c_in(args, t), x_t.ndim)
    model_output = model(c_in * x_t, rescaled_t, s=rescaled_s)
    c_skip, c_out = [append_dims(x, x_t.ndim) for x in get_inner_scalings(args, t, args.inner_parametrization)]
    g_theta = c_out * model_output + c_skip * x_t
    c_skip, c_out = [append_dims(x, x_t.ndim) for x in get_outer_scalings(args, t, s, args.outer_parametrization)]
    G_theta = c_out * g_theta + c_skip * x_t
    return G_theta
