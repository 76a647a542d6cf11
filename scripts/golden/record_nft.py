"""Record the official NFT policy loss (NVlabs/NFT ``dp_actor.py``) on the inputs of ``tests/golden/test_nft.py``.

    python scripts/golden/record_nft.py --checkout /path/to/NFT [--commit SHA]

``--checkout`` is a checkout (or exported snapshot, then give ``--commit``) of https://github.com/NVlabs/NFT; its
``dp_actor.py`` is imported from there and ``DataParallelPPOActor.update_policy`` runs unchanged, NFT branch
(``neg_weight >= 0``), one micro-batch per answer, so the recording holds each answer's ``pg_loss`` and the
gradient of the official loss with respect to the per-token log-probs.

Stand-ins, written here, for what is not installable on a CPU machine (``verl``, ``flash_attn``), used only for
plumbing: ``verl.DataProto`` (a dict of tensors with ``select``/``split``/``to``), ``BasePPOActor`` (stores the
config), ``append_to_dict``, ``masked_mean`` (the mean of the masked entries; it feeds only logged metrics here), and
names that the NFT branch never calls. ``torch.cuda.current_device`` answers ``"cpu"``. The actor's network forward
(``_forward_micro_batch``) is replaced by the recording's fixed inputs: it returns zero entropy (``entropy_coeff``
is 0) and the rows of one float32 leaf tensor of log-probs, so ``update_policy``'s loss arithmetic, reduction and
backward are the official code's.
"""

import argparse
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.golden.recorded import write_recording  # noqa: E402
from tests.golden.test_nft import OFFICIAL_CASES, case_name, nft_inputs  # noqa: E402


def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


class TensorBatch(dict):
    """What ``update_policy`` uses of a TensorDict: item access, ``split`` along the batch, ``to``."""

    def split(self, size):
        n = next(iter(self.values())).size(0)
        return [TensorBatch({k: v[i:i + size] for k, v in self.items()}) for i in range(0, n, size)]

    def to(self, device):
        return TensorBatch({k: v.to(device) for k, v in self.items()})


class DataProto:
    def __init__(self, batch, meta_info):
        self.batch, self.meta_info, self.non_tensor_batch = TensorBatch(batch), meta_info, {}

    def select(self, batch_keys):
        return DataProto({k: self.batch[k] for k in batch_keys}, self.meta_info)


class BasePPOActor:
    def __init__(self, config):
        self.config = config


class Config(dict):
    __getattr__ = dict.__getitem__


def _unavailable(*args, **kwargs):
    raise RuntimeError("stand-in: not called on the NFT branch")


def install_standins():
    def masked_mean(values, mask, axis=None):
        return (values * mask).sum() / mask.sum() if axis is None else (values * mask).sum(axis) / mask.sum(axis)

    def append_to_dict(metrics, data):
        for key, value in data.items():
            metrics.setdefault(key, []).append(value)

    functional = _module("verl.utils.torch_functional", masked_mean=masked_mean, logprobs_from_logits=_unavailable,
                         entropy_from_logits=_unavailable)
    _module("verl", DataProto=DataProto, __path__=[])
    _module("verl.trainer", __path__=[])
    _module("verl.trainer.ppo", __path__=[], core_algos=_module("verl.trainer.ppo.core_algos",
                                                                compute_policy_loss=_unavailable,
                                                                kl_penalty=_unavailable))
    _module("verl.workers", __path__=[])
    _module("verl.workers.actor", BasePPOActor=BasePPOActor)
    _module("verl.utils", __path__=[], torch_functional=functional)
    _module("verl.utils.py_functional", append_to_dict=append_to_dict)
    _module("verl.utils.ulysses", ulysses_pad_and_slice_inputs=_unavailable, gather_outpus_and_unpad=_unavailable)
    _module("verl.utils.seqlen_balancing", rearrange_micro_batches=_unavailable, get_reverse_idx=_unavailable)
    _module("flash_attn", __path__=[])
    _module("flash_attn.bert_padding", pad_input=_unavailable, unpad_input=_unavailable, rearrange=_unavailable,
            index_first_axis=_unavailable)
    torch.cuda.current_device = lambda: "cpu"


def run_official(actor_cls, inputs, *, ratio_type, normalize, neg_weight, eps, off_policy, micro_batch_size=1):
    """``(per-micro-batch pg_loss, d loss / d log_prob)`` of one official ``update_policy`` call."""
    log_prob = inputs["log_prob"].clone().requires_grad_(True)
    old = inputs["old_log_prob"] if off_policy else inputs["log_prob"]
    mask = inputs["response_mask"]
    B, T = mask.shape
    config = Config(use_remove_padding=False, ulysses_sequence_parallel_size=1, use_torch_compile=False,
                    use_kl_loss=False, ppo_mini_batch_size=B, ppo_micro_batch_size_per_gpu=micro_batch_size,
                    ppo_epochs=1, use_dynamic_bsz=False, clip_ratio=0.2, clip_ratio_low=None, clip_ratio_high=None,
                    entropy_coeff=0.0, use_token_level_loss=True, grad_clip=1.0, neg_weight=neg_weight,
                    ratio_type=ratio_type, clamp_negative=eps, clamp_positive=0.0, normalize=normalize)
    dummy = torch.nn.Linear(1, 1)
    actor = actor_cls(config, dummy, torch.optim.SGD(dummy.parameters(), lr=0.0))

    def forward(micro_batch, temperature):  # the recording's log-probs in place of the network
        rows = micro_batch["responses"][:, 0]
        return torch.zeros(len(rows), T), log_prob[rows]

    actor._forward_micro_batch = forward
    batch = dict(responses=torch.arange(B)[:, None].expand(B, T), input_ids=torch.zeros(B, 2 + T, dtype=torch.long),
                 attention_mask=torch.cat([torch.ones(B, 2, dtype=mask.dtype), mask], 1),
                 position_ids=torch.zeros(B, 2 + T, dtype=torch.long), old_log_probs=old, advantages=torch.zeros(B, T),
                 correct_rate=inputs["correct_rate"], correct_mask=inputs["correct_mask"])
    grads = []
    log_prob.register_hook(grads.append)
    metrics = actor.update_policy(DataProto(batch, {"temperature": 1.0}))
    return torch.tensor(metrics["actor/pg_loss"], dtype=torch.float64), sum(grads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", required=True, help="a checkout of https://github.com/NVlabs/NFT")
    parser.add_argument("--commit", help="the checkout's commit (when it is an exported snapshot without .git)")
    args = parser.parse_args()
    checkout = Path(args.checkout).resolve()
    if not (checkout / "dp_actor.py").is_file():
        raise SystemExit(f"--checkout: {checkout} has no dp_actor.py (not an NVlabs/NFT checkout)")
    install_standins()
    sys.path.insert(0, str(checkout))
    from dp_actor import DataParallelPPOActor

    inputs = nft_inputs()
    tensors = dict(inputs)
    for ratio_type, normalize, neg_weight, eps, off_policy in OFFICIAL_CASES:
        name = case_name(ratio_type, normalize, neg_weight, eps, off_policy)
        pg_loss, grad = run_official(DataParallelPPOActor, inputs, ratio_type=ratio_type, normalize=normalize,
                                     neg_weight=neg_weight, eps=eps, off_policy=off_policy)
        tensors[f"{name}.pg_loss"], tensors[f"{name}.grad_log_prob"] = pg_loss, grad
    findings = {}
    for normalize in (0, 1, 2):  # the whole batch in one micro-batch, as the official runs use it
        try:
            run_official(DataParallelPPOActor, inputs, ratio_type="sequence", normalize=normalize, neg_weight=1.0,
                         eps=1.0, off_policy=True, micro_batch_size=inputs["response_mask"].size(0))
            findings[f"sequence_normalize_{normalize}"] = "runs"
        except RuntimeError as error:
            findings[f"sequence_normalize_{normalize}"] = f"RuntimeError: {error}"
    import transformers
    import trl

    write_recording(
        "nft", "pg_loss", tensors, repository="https://github.com/NVlabs/NFT", checkout=checkout,
        commit=args.commit, file="dp_actor.py", versions={"transformers": transformers.__version__, "trl": trl.__version__},
        function="DataParallelPPOActor.update_policy (NFT branch, neg_weight >= 0) with clamp_preserve_grad",
        seeds={"tests.golden.test_nft.nft_inputs": 0},
        micro_batches="one answer per micro-batch: `<case>.pg_loss` is each answer's official pg_loss, "
                      "`<case>.grad_log_prob` the gradient of the official accumulated loss (sum of pg_loss / B)",
        findings=findings)


if __name__ == "__main__":
    main()
