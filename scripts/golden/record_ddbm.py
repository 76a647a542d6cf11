"""Record alexzhou907/DDBM's ADM UNet for hfgen's converter parity test (``tests/golden/data/ddbm/``).

    git clone https://github.com/alexzhou907/DDBM /tmp/DDBM   # or any snapshot of it
    OMP_NUM_THREADS=1 python scripts/golden/record_ddbm.py --checkout /tmp/DDBM [--commit SHA]

What runs from the checkout, unchanged: ``ddbm/unet.py``'s ``UNetModel`` (with ``ddbm/nn.py``), built tiny with the
released models' options (``train_ddbm.sh``: scale-shift norm, ResBlock up/down-sampling, fixed channels per head,
the source concatenated, flash attention), in float32.

Its weights are not stored (a UNet with 32-channel GroupNorms has ~10^5 to 10^6 parameters): each tensor of the
official state dict, the ``i``-th in its order, is ``tests.test_convert_ddbm.seeded_weight(name, shape, i)`` (a
seeded normal draw), which the test regenerates. The recording keeps each tensor's name, shape and sum (to check
the regeneration), the inputs, and the official outputs. A second configuration (gray 8x8 images) is recorded by
its shapes only, for the test that distils a converted teacher.

Stand-in (written here): ``flash_attn.modules.mha.FlashSelfAttention`` (CUDA only), which ``QKVFlashAttention``
calls on ``qkv`` laid out ``(batch, sequence, 3, heads, head_dim)``: softmax attention with scale
``1/sqrt(head_dim)``, not causal, no dropout, returning ``(batch, sequence, heads, head_dim)`` (flash-attn's
documented semantics). ``einops`` is the real package.
"""

import torch
import torch.nn.functional as F
from _common import arguments, stand_in, write

args = arguments(__doc__.splitlines()[0], "alexzhou907/DDBM")
from tests.test_convert_ddbm import GRAY, TINY_OFFICIAL, seeded_weight  # noqa: E402


class FlashSelfAttention(torch.nn.Module):
    def __init__(self, attention_dropout=0.0, **kwargs):
        super().__init__()
        assert attention_dropout == 0.0

    def forward(self, qkv, causal=False):
        assert not causal
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # batch, heads, sequence, head_dim
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)


stand_in("flash_attn.modules.mha", FlashSelfAttention=FlashSelfAttention)
from ddbm.unet import UNetModel  # noqa: E402


def shapes_and_sums(model, with_sums=True):
    tensors = {}
    with torch.no_grad():
        for i, (name, p) in enumerate(model.state_dict().items()):
            p.copy_(seeded_weight(name, p.shape, i))
            tensors[f"shape.{i:03d}.{name}"] = torch.tensor(p.shape, dtype=torch.int64)
            if with_sums:
                tensors[f"sum.{i:03d}.{name}"] = p.double().sum()
    return tensors


def main():
    model = UNetModel(**TINY_OFFICIAL).eval()
    tensors = shapes_and_sums(model)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    c_noise = torch.tensor([-1.3, 2.7])
    with torch.no_grad():
        tensors.update({"x": x, "xT": y, "c_noise": c_noise, "output": model(x, c_noise, xT=y)})
    write(args, "ddbm", "unet", tensors, file="ddbm/unet.py, ddbm/nn.py",
          function=f"UNetModel({', '.join(f'{k}={v!r}' for k, v in TINY_OFFICIAL.items())}).forward(x, timesteps, xT)",
          seeds={"weights: tests.test_convert_ddbm.seeded_weight(name, shape, index)": "1000 + index",
                 "torch.Generator of x, then xT": 0}, extra_versions=("einops",))
    gray = shapes_and_sums(UNetModel(**GRAY), with_sums=False)
    write(args, "ddbm", "unet_gray_shapes", gray, file="ddbm/unet.py",
          function=f"UNetModel({', '.join(f'{k}={v!r}' for k, v in GRAY.items())}).state_dict() (names and shapes)",
          seeds={"weights: tests.test_convert_ddbm.seeded_weight(name, shape, index)": "1000 + index"},
          extra_versions=("einops",))


main()
