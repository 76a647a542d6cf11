"""Tiny, deterministic trainers of every hfgen method, for the multi-process and resume tests.

``build(name, output_dir, **training_args)`` returns a ready trainer; ``extra_state(name, trainer)`` the tensors
beyond the model that a resumed run must also reproduce (EMA targets, reference model, teacher statistics).
Everything is built from configs (nothing is downloaded); data and weights are seeded.
"""

from __future__ import annotations

import torch

from hfgen.methods import builtin_methods


def builders_of(methods) -> dict[str, str]:
    """``{builder: trainer class}`` for the trainers of ``methods`` (manifests) that a function here builds.

    A trainer's builder is named after its module: ``hfgen.trainers.nft.nft_trainer:NFTTrainer`` is built by
    ``nft(output_dir, **training_args)``.
    """
    out = {}
    for info in methods:
        for cls_name in info.components:
            module = info.component_module(cls_name).rpartition(".")[2]
            builder = module.removesuffix("_trainer")
            if cls_name.endswith("Trainer") and builder != module and callable(globals().get(builder)):
                out.setdefault(builder, cls_name)
    return out


def trainers_without_builder(methods) -> set[str]:
    """The trainer classes (``transformers.Trainer`` subclasses) registered by ``methods`` that no builder makes."""
    from transformers import Trainer

    trainers = {name for info in methods for name in info.components
                if isinstance(obj := info.load_component(name), type) and issubclass(obj, Trainer)}
    return trainers - set(BUILDERS.values())


COMMON = dict(use_cpu=True, report_to=[], disable_tqdm=True, seed=0, logging_steps=1, dataloader_num_workers=0,
              dataloader_pin_memory=False, learning_rate=1e-3)


def _args(config_cls, output_dir, **kwargs):
    return config_cls(output_dir=str(output_dir), **{**COMMON, **kwargs})


def even_first_digit_reward(completions, **kwargs) -> list[float]:
    """A rule verifier that a random tiny model satisfies about half the time: the answer starts with 0, 2, 4, 6 or 8."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(t.strip()[:1] in set("02468")) if t.strip() else 0.0 for t in texts]


def nft(output_dir, reward=None, **kwargs):
    from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_tokenizer, tiny_causal_lm
    from hfgen.trainers import NFTConfig, NFTTrainer

    tokenizer = arithmetic_tokenizer()
    # one-digit operands: every prompt "a+b=" has 4 tokens, so no rank's batch pads differently from another's
    data = arithmetic_dataset(max_operand=10, seed=0)["train"].select(range(8))
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    defaults = dict(num_generations=4, per_device_train_batch_size=8, max_completion_length=4, bf16=False,
                    gradient_checkpointing=False, learning_rate=0.05)
    args = _args(NFTConfig, output_dir, **{**defaults, **kwargs})
    return NFTTrainer(model=model, reward_funcs=reward or even_first_digit_reward, args=args, train_dataset=data,
                      processing_class=tokenizer)


def masked_diffusion(output_dir, trainer_cls=None, peft_config=None, examples=16, **kwargs):
    from datasets import Dataset

    from hfgen.data.text import char_tokenizer
    from hfgen.testing.tiny_models import tiny_bert_mlm
    from hfgen.trainers import MaskedDiffusionConfig, MaskedDiffusionTrainer

    tokenizer = char_tokenizer("abcdef")
    ids = torch.randint(5, len(tokenizer), (16, 12), generator=torch.Generator().manual_seed(1))
    model = tiny_bert_mlm(len(tokenizer), seed=0)
    args = _args(MaskedDiffusionConfig, output_dir, **{"per_device_train_batch_size": 4, **kwargs})
    return (trainer_cls or MaskedDiffusionTrainer)(model=model, args=args, processing_class=tokenizer,
                                                   train_dataset=Dataset.from_dict({"input_ids": ids[:examples].tolist()}),
                                                   **({"peft_config": peft_config} if peft_config else {}))


def gft(output_dir, examples=16, **kwargs):
    from datasets import Dataset

    from hfgen.pipelines.gft import GFTCausalLM
    from hfgen.testing.tiny_models import tiny_llama
    from hfgen.trainers import GFTConfig, GFTTrainer

    lm = tiny_llama(12, seed=0, max_position_embeddings=16)
    model = GFTCausalLM.from_causal_lm(lm, null_condition_token_id=11)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 10, (16, 7), generator=g)
    ids[:, 0] = torch.randint(0, 3, (16,), generator=g)  # condition tokens
    args = _args(GFTConfig, output_dir, **{"cond_drop_prob": 0.1, "per_device_train_batch_size": 4, **kwargs})
    return GFTTrainer(model, args, train_dataset=Dataset.from_dict({"input_ids": ids[:examples].tolist()}))


def ddo(output_dir, **kwargs):
    from hfgen.testing.tiny_models import tiny_llama
    from hfgen.trainers import DDOConfig, DDOTrainer

    def examples(n, seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n):
            ids = torch.randint(1, 16, (int(torch.randint(4, 8, (1,), generator=g)),), generator=g)
            labels = ids.clone()
            labels[:2] = -100
            out.append({"input_ids": ids, "labels": labels})
        return out

    model = tiny_llama(16, seed=0, pad_token_id=0)
    args = _args(DDOConfig, output_dir, **{"per_device_train_batch_size": 4, **kwargs})
    return DDOTrainer(model, args=args, train_dataset=examples(16, 1), fake_dataset=examples(16, 2))


def _paired_digits():
    from hfgen.data.paired_digits import paired_digits_dataset

    return paired_digits_dataset(size=8, split="test").select(range(16))


def _bridge_unet(seed=0):
    from hfgen.testing.tiny_models import tiny_unet2d

    return tiny_unet2d(seed=seed)


def bridge(output_dir, peft_config=None, **kwargs):
    from hfgen.trainers import BridgeConfig, BridgeTrainer

    args = _args(BridgeConfig, output_dir, **{"per_device_train_batch_size": 4, **kwargs})
    return BridgeTrainer(_bridge_unet(), args, train_dataset=_paired_digits(),
                         **({"peft_config": peft_config} if peft_config else {}))


def consistency_bridge(output_dir, **kwargs):
    from hfgen.trainers import ConsistencyBridgeConfig, ConsistencyBridgeTrainer

    # an EMA target network with a decay far from 1, so a target not restored on resume shows
    args = _args(ConsistencyBridgeConfig, output_dir, **{"per_device_train_batch_size": 4, "target_network": "ema",
                                                        "target_ema_decay": 0.5, **kwargs})
    return ConsistencyBridgeTrainer(_bridge_unet(), args, train_dataset=_paired_digits())


def consistency_distillation(output_dir, **kwargs):
    from datasets import Dataset

    from hfgen.demos.analytic_precond import ring_teacher
    from hfgen.pipelines.consistency_trajectory import TrajectoryMLP
    from hfgen.trainers import ConsistencyDistillationConfig, ConsistencyDistillationTrainer

    teacher = ring_teacher()
    data = Dataset.from_dict({"sample": teacher.sample(64, torch.Generator().manual_seed(0)).tolist()})
    torch.manual_seed(0)
    args = _args(ConsistencyDistillationConfig, output_dir, **{
        "preconditioning": "analytic", "per_device_train_batch_size": 16, "statistics_grid_size": 8,
        "statistics_samples": 32, **kwargs})
    if hasattr(args, "estimate_trend"):  # s_t estimated on this coarse 8-point grid gives an infinite loss; use s_t = 0
        args.estimate_trend = False
    return ConsistencyDistillationTrainer(TrajectoryMLP(dim=2, hidden_dim=16), args, teacher=teacher,
                                          train_dataset=data.with_format("torch"))


def mf2(output_dir, **kwargs):
    from hfgen.data.faces import build_face_tokenizer, make_synthetic_faces
    from hfgen.demos.mf2 import tiny_mf2_config
    from hfgen.models.mf2 import MF2Model
    from hfgen.trainers.mf2 import MF2Trainer, MF2TrainingConfig

    tokenizer = build_face_tokenizer()
    faces = make_synthetic_faces(16, image_size=16, seed=0)
    torch.manual_seed(0)
    model = MF2Model(tiny_mf2_config(tokenizer, image_size=16, width=16, layers=1))
    args = MF2TrainingConfig(str(output_dir), **{**COMMON, "per_device_train_batch_size": 4, **kwargs})
    return MF2Trainer(model=model, args=args, train_dataset=faces, processing_class=tokenizer)


def sequential_rec(output_dir, examples=16, **kwargs):
    from transformers import AutoModel

    from hfgen.adapters import IISANConfig, IISANModel
    from hfgen.data.recommendation import make_synthetic_recommendation, synthetic_backbone_configs
    from hfgen.models import SASRecConfig, SASRecModel
    from hfgen.trainers import SequentialRecConfig, SequentialRecTrainer

    data = make_synthetic_recommendation(num_users=32, seed=0)
    torch.manual_seed(0)
    backbones = {m: AutoModel.from_config(c) for m, c in synthetic_backbone_configs().items()}
    encoder = IISANModel(IISANConfig(layers="group:3", pooling="mean"), backbones)
    encoder.set_item_inputs(data.item_inputs)
    recommender = SASRecModel(SASRecConfig())
    args = _args(SequentialRecConfig, output_dir, **{"per_device_train_batch_size": 8, "adapter_learning_rate": 1e-3,
                                                     **kwargs})
    return SequentialRecTrainer(recommender, encoder, args, data.leave_one_out(10)["train"].select(range(examples)))


# the trainer class each builder makes, derived from hfgen's manifests; tests/test_core_manifests.py checks that every
# trainer they register has one
BUILDERS = builders_of(builtin_methods())
TRAINERS = tuple(BUILDERS)


def build(name: str, output_dir, **kwargs):
    if name not in TRAINERS:
        raise ValueError(f"`name` must be one of {TRAINERS}, got {name!r}.")
    return globals()[name](output_dir, **kwargs)


def extra_state(name: str, trainer) -> dict[str, torch.Tensor]:
    """The state beyond ``trainer.model`` that training depends on, flattened to named tensors."""
    out = {}
    if name == "consistency_bridge" and trainer.target_model is not None:
        out.update({f"ema_target.{k}": v for k, v in trainer.target_model.state_dict().items()})
    if name == "ddo":
        out.update({f"ref_model.{k}": v for k, v in trainer.ref_model.state_dict().items()})
        if trainer.ema_model is not None:
            out.update({f"ema_model.{k}": v for k, v in trainer.ema_model.state_dict().items()})
    if name == "consistency_distillation" and trainer.statistics is not None:
        tables = trainer.statistics
        out.update({"statistics.log_t": tables.log_t, "statistics.l": tables.l, "statistics.s": tables.s})
    return out


def training_logs(trainer) -> dict[int, dict[str, float]]:
    """The numbers logged at each training step (loss, grad norm, learning rate, the method's metrics; no timings)."""
    return {log["step"]: {k: v for k, v in log.items() if isinstance(v, int | float) and "time" not in k}
            for log in trainer.state.log_history if "loss" in log}
