"""Bad-input sweep: every public config, trainer, pipeline ``__call__``, scheduler and adapter entry point is
given invalid values (wrong types, negative sizes, NaN, empty inputs, mismatched shapes, unknown names) and
must raise a ``ValueError`` / ``TypeError`` whose message names the argument, before any expensive work.

Each case is ``(entry point, argument, call)``; ``CASES`` is counted in ``docs/reliability.md``.
"""

from __future__ import annotations

import functools

import pytest
import torch

from hfgen.testing.tiny_models import tiny_unet2d

NAN, INF = float("nan"), float("inf")
OUT = "/tmp/hfgen-bad-input-never-created"


# --------------------------------------------------------------------------------- tiny components


@functools.cache
def bridge_pipe():
    from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline

    pipe = ConsistencyBridgePipeline(tiny_unet2d(0), BridgeScheduler(solver="consistency"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def gft_pipe():
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from hfgen.pipelines import GuidanceFreePipeline

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, time_cond_proj_dim=16,
                                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                                mid_block_type=None, num_class_embeds=4)
    pipe = GuidanceFreePipeline(unet=unet, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def mdm_pipe():
    from transformers import BertConfig, BertForMaskedLM

    from hfgen.data.text import char_tokenizer
    from hfgen.pipelines import FirstHittingScheduler, MaskedDiffusionPipeline

    tokenizer = char_tokenizer("abc de")
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=16))
    pipe = MaskedDiffusionPipeline(denoiser=bert, tokenizer=tokenizer, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def ct_pipe():
    from hfgen.pipelines import ConsistencyTrajectoryPipeline, ConsistencyTrajectoryScheduler
    from hfgen.pipelines.consistency_trajectory.modeling_trajectory_mlp import TrajectoryMLP

    torch.manual_seed(0)
    pipe = ConsistencyTrajectoryPipeline(TrajectoryMLP(dim=2, hidden_dim=8, num_layers=1, time_embed_dim=4),
                                         ConsistencyTrajectoryScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def popcorn_pipe():
    import json

    from hfgen.pipelines import PopcornPipeline
    from hfgen.pipelines.popcorn.llm import TransformersLLM
    from hfgen.testing.scripted_lm import ScriptedLM, ScriptedLMConfig, byte_tokenizer

    plan = {"title": "t", "cover_prompt": "c", "video_prompt": "v"}
    llm = TransformersLLM(ScriptedLM(ScriptedLMConfig(script=json.dumps(plan))), byte_tokenizer(), do_sample=False,
                          max_new_tokens=8)
    return PopcornPipeline(llm=llm)


def sched(name, **kwargs):
    import hfgen.pipelines as p

    return getattr(p, name)(**kwargs)


def fhs_ready():
    s = sched("FirstHittingScheduler")
    s.set_timesteps(num_masked=torch.tensor([3, 2]))
    return s


def bridge_ready(**kwargs):
    s = sched("BridgeScheduler", **kwargs)
    s.set_timesteps(2)
    return s


def ct_ready():
    s = sched("ConsistencyTrajectoryScheduler")
    s.set_timesteps(2)
    return s


def config(name, **kwargs):
    import hfgen.trainers as t

    return getattr(t, name)(output_dir=OUT, report_to=[], **kwargs)


def adapter_config(name, **kwargs):
    import hfgen.adapters as a

    return getattr(a, name)(**kwargs)


def image(n=1, c=1, size=8):
    return torch.rand(n, c, size, size)


# ------------------------------------------------------------------------------------------- cases

CASES: list[tuple[str, str, object]] = []


def case(entry: str, arg: str, call) -> None:
    CASES.append((entry, arg, call))


def configs(name: str, bad: dict[str, list]) -> None:
    for arg, values in bad.items():
        for value in values:
            case(name, arg, lambda name=name, arg=arg, value=value: config(name, **{arg: value}))


# configs (TrainingArguments / GRPOConfig subclasses): unknown names, wrong types, NaN, out of range
configs("MaskedDiffusionConfig", {"masking_schedule": ["cubic", 3], "schedule_eps": [0.0, 1.5, NAN, "1e-3"],
                                  "time_epsilon": [-0.1, NAN, INF], "mask_token_id": [-1, 1.5]})
configs("GFTConfig", {"cond_drop_prob": [1.0, -0.1, NAN, "0.1"], "beta_max": [2.0, 0.0, NAN], "beta_min": [-0.5],
                      "prediction_type": ["velocity"], "noise_schedule": ["quadratic"],
                      "num_train_timesteps": [1, 0, 2.5], "null_class_label": [NAN]})
configs("DDOConfig", {"alpha": [-1.0, NAN], "beta": [0.0, -1.0, NAN, "1"], "p_std": [0.0, NAN], "snr_gamma": [0.0, NAN],
                      "num_rounds": [0, 1.5], "num_reference_samples": [0], "self_play_eval_steps": [0],
                      "remove_unused_columns": [True]})
configs("BridgeConfig", {"noise_schedule": ["subvp"], "t_min": [0.0, -1.0, NAN, "1e-4"], "sigma_data": [0.0, NAN],
                         "cov_xy": [10.0, NAN], "beta_min": [NAN], "remove_unused_columns": [True]})
configs("ConsistencyBridgeConfig", {"mode": ["finetune"], "time_schedule": ["cosine"], "target_network": ["polyak"],
                                    "distance": ["l1"], "gamma": [0.0, NAN], "delta_t": [-0.1, NAN],
                                    "target_ema_decay": [1.0, NAN], "sigmoid_q": [1.0], "stage_steps": [0, 2.5]})
configs("ConsistencyDistillationConfig", {"preconditioning": ["heun"], "sigma_min": [0.0, NAN, 100.0],
                                          "sigma_data": [0.0, NAN], "num_discretization_steps": [1, 8.5],
                                          "long_jump": ["backward"], "long_jump_ratio": [0.5, NAN],
                                          "sampler_gamma": [1.5, NAN]})
configs("MF2TrainingConfig", {"global_loss_weight": [-1.0, NAN], "local_loss_weight": [-0.5, INF],
                              "max_text_length": [2, 8.0]})
configs("NFTConfig", {"neg_weight": [-1.0, NAN], "question_weight": ["uniform"], "negative_clamp": [0.0, NAN],
                      "rq_clip": [[0.9, 0.1], [0.0, 0.5]], "max_log_ratio": [0.0, NAN], "ratio_type": ["seq"]})
configs("SequentialRecConfig", {"max_seq_len": [0, 2.5], "adapter_learning_rate": [0.0, NAN],
                                "backbone_learning_rate": [-1e-4], "eval_top_k": [[], [0]], "item_batch_size": [0],
                                "remove_unused_columns": [True]})

# model and adapter configs
for arg, value in {"hidden_size": 0, "num_hidden_layers": -1, "max_seq_len": 0, "num_items": -5}.items():
    case("SASRecConfig", arg, lambda arg=arg, value=value: __import__("hfgen.models", fromlist=["x"]).SASRecConfig(**{arg: value}))
case("SASRecConfig", "num_attention_heads", lambda: __import__("hfgen.models", fromlist=["x"]).SASRecConfig(hidden_size=64,
                                                                                                   num_attention_heads=3))
for arg, value in {"emotion_names": ["happy"], "projection_dim": 0, "au_attention_heads": 7}.items():
    case("MF2Config", arg, lambda arg=arg, value=value: __import__("hfgen.models", fromlist=["x"]).MF2Config(**{arg: value}))
for arg, value in {"modalities": [], "pooling": "max", "embedding_dim": 0, "bottleneck_size": -1,
                   "gate_temperature": 0.0, "activation": "tanh", "layers": "every-other"}.items():
    case("SideAdapterConfig", arg, lambda arg=arg, value=value: adapter_config("SideAdapterConfig", **{arg: value}))
for arg, value in {"modalities": ["text", "image", "audio"], "fusion": "concat", "head": "sasrec",
                   "gate_temperature": NAN, "embedding_dim": NAN}.items():
    case("IISANConfig", arg, lambda arg=arg, value=value: adapter_config("IISANConfig", **{arg: value}))
for arg, value in {"cross_modal": "full", "fusion": "attention", "cross_dim": 0, "modalities": "text"}.items():
    case("CROSSANConfig", arg, lambda arg=arg, value=value: adapter_config("CROSSANConfig", **{arg: value}))
for arg, value in {"emotion_names": ["happy"], "bottleneck_size": 0, "gate_temperature": -1.0, "activation": "elu",
                   "au_loss_weight": -1.0}.items():
    case("DFNConfig", arg, lambda arg=arg, value=value: adapter_config("DFNConfig", **{arg: value}))
for arg, value in {"tuning": "prefix", "lora_r": 0, "adapter_size": 0}.items():
    case("BackboneItemEncoderConfig", arg, lambda arg=arg, value=value: adapter_config("BackboneItemEncoderConfig",
                                                                                        **{arg: value}))
case("IISANModel", "backbone", lambda: __import__("hfgen.adapters", fromlist=["x"]).IISANModel(adapter_config("IISANConfig")))

# schedulers: constructors, set_timesteps and step
for name, arg, value in [("FirstHittingScheduler", "masking_schedule", "sqrt"), ("FirstHittingScheduler", "tokens_per_step", 0),
                         ("FirstHittingScheduler", "tokens_per_step", 1.5), ("FirstHittingScheduler", "sampling_dtype", "float16"),
                         ("FirstHittingScheduler", "schedule_eps", 0.0), ("FirstHittingScheduler", "schedule_eps", NAN),
                         ("AncestralMaskedScheduler", "masking_schedule", "exp"), ("AncestralMaskedScheduler", "sampling_dtype", "bf16"),
                         ("AncestralMaskedScheduler", "schedule_eps", 1.0), ("AncestralMaskedScheduler", "schedule_eps", NAN),
                         ("BridgeScheduler", "noise_schedule", "subvp"), ("BridgeScheduler", "solver", "euler"),
                         ("BridgeScheduler", "eta", 1.5), ("BridgeScheduler", "eta", NAN), ("BridgeScheduler", "t_min", 0.0),
                         ("BridgeScheduler", "t_min", NAN), ("BridgeScheduler", "gamma", NAN), ("BridgeScheduler", "sigma_data", 0.0),
                         ("BridgeScheduler", "sigma_data", NAN), ("BridgeScheduler", "rho", NAN),
                         ("ConsistencyTrajectoryScheduler", "preconditioning", "edm"),
                         ("ConsistencyTrajectoryScheduler", "long_jump", "backward"),
                         ("ConsistencyTrajectoryScheduler", "long_jump_ratio", 0.5),
                         ("ConsistencyTrajectoryScheduler", "sigma_min", 0.0), ("ConsistencyTrajectoryScheduler", "sigma_min", NAN),
                         ("ConsistencyTrajectoryScheduler", "gamma", 1.5), ("ConsistencyTrajectoryScheduler", "gamma", NAN),
                         ("ConsistencyTrajectoryScheduler", "preconditioning", "analytic")]:
    arg_name = "statistics" if value == "analytic" else arg
    case(name, arg_name, lambda name=name, arg=arg, value=value: sched(name, **{arg: value}))
for steps in (0, -3, 2.5, NAN, "4"):
    case("FirstHittingScheduler.set_timesteps", "num_inference_steps",
         lambda steps=steps: sched("FirstHittingScheduler").set_timesteps(steps, num_masked=torch.tensor([3])))
    case("AncestralMaskedScheduler.set_timesteps", "num_inference_steps",
         lambda steps=steps: sched("AncestralMaskedScheduler").set_timesteps(steps))
    case("BridgeScheduler.set_timesteps", "num_inference_steps", lambda steps=steps: sched("BridgeScheduler").set_timesteps(steps))
    case("ConsistencyTrajectoryScheduler.set_timesteps", "num_inference_steps",
         lambda steps=steps: sched("ConsistencyTrajectoryScheduler").set_timesteps(steps))
for masked in (None, torch.tensor([], dtype=torch.long), torch.tensor([-1, 2]), torch.tensor([1.5])):
    case("FirstHittingScheduler.set_timesteps", "num_masked",
         lambda masked=masked: sched("FirstHittingScheduler").set_timesteps(num_masked=masked))
case("ConsistencyTrajectoryScheduler.set_timesteps", "gamma", lambda: sched("ConsistencyTrajectoryScheduler").set_timesteps(2, gamma=2.0))
case("FirstHittingScheduler.step", "set_timesteps",
     lambda: sched("FirstHittingScheduler").step(torch.zeros(1, 3, 5), 0.5, torch.zeros(1, 3, dtype=torch.long), 4))
case("AncestralMaskedScheduler.step", "set_timesteps",
     lambda: sched("AncestralMaskedScheduler").step(torch.zeros(1, 3, 5), 0.5, torch.zeros(1, 3, dtype=torch.long), 4))
case("FirstHittingScheduler.step", "sample", lambda: fhs_ready().step(torch.zeros(2, 3, 5), 0.5, torch.zeros(3, 3, dtype=torch.long), 4))
case("FirstHittingScheduler.step", "model_output", lambda: fhs_ready().step(torch.zeros(2, 4, 5), 0.5, torch.full((2, 3), 4), 4))
case("FirstHittingScheduler.step", "temperature", lambda: fhs_ready().step(torch.zeros(2, 3, 5), 0.5, torch.full((2, 3), 4), 4,
                                                                             temperature=0.0))
case("BridgeScheduler.step", "set_timesteps", lambda: sched("BridgeScheduler").step(image(), 1.0, image(), image()))
case("BridgeScheduler.step", "timestep", lambda: bridge_ready().step(image(), 0.123, image(), image()))
case("BridgeScheduler.step", "eta", lambda: bridge_ready().step(image(), 1.0, image(), image(), eta=NAN))
case("BridgeScheduler.step", "source", lambda: bridge_ready().step(image(), 1.0, image(), image(size=4)))
case("BridgeScheduler.step", "model_output", lambda: bridge_ready().step(image(size=4), 1.0, image(), image()))
case("ConsistencyTrajectoryScheduler.step", "timestep", lambda: ct_ready().step(torch.zeros(1, 2), 0.5, torch.zeros(1, 2)))
case("ConsistencyTrajectoryScheduler.step", "model_output", lambda: ct_ready().step(torch.zeros(1, 3), 80.0, torch.zeros(1, 2)))


# trainers: the wrong config class
def trainer(name, args, **kwargs):
    import hfgen.trainers as t

    return getattr(t, name)(model=torch.nn.Linear(1, 1), args=args, **kwargs)


def plain_args():
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=OUT, report_to=[])


for name in ("MaskedDiffusionTrainer", "GFTTrainer", "DDOTrainer", "BridgeTrainer", "ConsistencyBridgeTrainer",
             "ConsistencyDistillationTrainer", "MF2Trainer", "SequentialRecTrainer"):
    case(name, "args", lambda name=name: trainer(name, plain_args()))
def bridge_trainer_with_a_one_channel_unet():
    from hfgen.trainers import BridgeTrainer

    return BridgeTrainer(model=tiny_unet2d(in_channels=1), args=config("BridgeConfig"))


case("BridgeTrainer", "model", bridge_trainer_with_a_one_channel_unet)
case("NFTTrainer", "args", lambda: __import__("hfgen.trainers", fromlist=["x"]).NFTTrainer(
    "unused-model", reward_funcs=[lambda **kw: [0.0]], args=plain_args()))

# pipelines' __call__
for kwargs, arg in [({"num_inference_steps": 0}, "num_inference_steps"), ({"num_inference_steps": 2.5}, "num_inference_steps"),
                    ({"num_inference_steps": NAN}, "num_inference_steps"), ({"eta": 1.5}, "eta"), ({"eta": NAN}, "eta"),
                    ({"output_type": "gif"}, "output_type"), ({"generator": [torch.Generator()] * 3}, "generator")]:
    case("ConsistencyBridgePipeline", arg, lambda kwargs=kwargs: bridge_pipe()(image(2), **kwargs))
case("ConsistencyBridgePipeline", "image", lambda: bridge_pipe()(image(1, c=3)))
case("ConsistencyBridgePipeline", "image", lambda: bridge_pipe()(image(1, size=16)))
case("ConsistencyBridgePipeline", "image", lambda: bridge_pipe()(torch.rand(0, 1, 8, 8)))
for kwargs, arg in [({"class_labels": [4]}, "class_labels"), ({"class_labels": [-1]}, "class_labels"),
                    ({"class_labels": []}, "class_labels"), ({"class_labels": [0], "beta": 0.0}, "beta"),
                    ({"class_labels": [0], "beta": NAN}, "beta"), ({"class_labels": [0], "beta": 1.5}, "beta"),
                    ({"class_labels": [0], "guidance_scale": 0.5}, "guidance_scale"),
                    ({"class_labels": [0], "guidance_scale": NAN}, "guidance_scale"),
                    ({"class_labels": [0], "guidance": "auto"}, "guidance"),
                    ({"class_labels": [0], "output_type": "jpg"}, "output_type"),
                    ({"class_labels": [0], "num_inference_steps": 0}, "num_inference_steps"),
                    ({"class_labels": [0], "num_inference_steps": 2.5}, "num_inference_steps"),
                    ({"class_labels": [0, 1], "generator": [torch.Generator()]}, "generator"),
                    ({"class_labels": [0], "latents": torch.zeros(1, 1, 4, 4)}, "latents"), ({}, "class_labels")]:
    case("GuidanceFreePipeline", arg, lambda kwargs=kwargs: gft_pipe()(**kwargs))
for kwargs, arg in [({"seq_len": 0}, "seq_len"), ({"seq_len": -2}, "seq_len"), ({"seq_len": 2.5}, "seq_len"),
                    ({"prompt": "abcabc", "seq_len": 3}, "seq_len"), ({"seq_len": 4, "num_samples": 0}, "num_samples"),
                    ({"seq_len": 4, "num_inference_steps": 0}, "num_inference_steps"),
                    ({"seq_len": 4, "temperature": 0}, "temperature"), ({"seq_len": 4, "temperature": NAN}, "temperature"),
                    ({"seq_len": 4, "output_type": "pil"}, "output_type"), ({"seq_len": 4, "mask_token_id": 10**6}, "mask_token_id"),
                    ({"seq_len": 4, "num_samples": 2, "generator": [torch.Generator()]}, "generator"),
                    ({"input_ids": torch.zeros(0, dtype=torch.long)}, "input_ids"),
                    ({"input_ids": torch.zeros(4)}, "input_ids"), ({"prompt": "ab", "input_ids": torch.zeros(4, dtype=torch.long)}, "prompt")]:
    case("MaskedDiffusionPipeline", arg, lambda kwargs=kwargs: mdm_pipe()(**kwargs))
for kwargs, arg in [({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
                    ({"num_inference_steps": 0}, "num_inference_steps"), ({"gamma": 1.5}, "gamma"), ({"gamma": NAN}, "gamma"),
                    ({"output_type": "gif"}, "output_type"), ({"batch_size": 2, "generator": [torch.Generator()]}, "generator"),
                    ({"latents": torch.zeros(1, 3)}, "latents")]:
    case("ConsistencyTrajectoryPipeline", arg, lambda kwargs=kwargs: ct_pipe()(**kwargs))
for kwargs, arg in [({"query": ""}, "query"), ({"query": []}, "query"), ({"query": 3}, "query"),
                    ({"query": "a", "num_references": 0}, "num_references"), ({"query": "a", "max_retries": -1}, "max_retries"),
                    ({"query": "a", "output_type": "gif"}, "output_type"), ({"query": "a", "use_retrieval": True}, "retriever")]:
    case("PopcornPipeline", arg, lambda kwargs=kwargs: popcorn_pipe()(**kwargs))

# hub / registry entry points
case("hfgen.load", "neither an existing folder", lambda: __import__("hfgen").load(OUT + "/missing/deeper/path"))
case("hfgen.get_method", "no-such-method", lambda: __import__("hfgen").get_method("no-such-method"))


@pytest.mark.parametrize("entry, arg, call", CASES, ids=[f"{e}-{a}-{i}" for i, (e, a, _) in enumerate(CASES)])
def test_bad_input_is_refused_naming_the_argument(entry, arg, call):
    with pytest.raises((ValueError, TypeError, LookupError, FileNotFoundError)) as info:
        call()
    assert arg in str(info.value), f"{entry}: the error does not name `{arg}`: {type(info.value).__name__}: {info.value}"
    assert type(info.value).__module__.split(".")[0] != "torch", f"{entry}: a torch error leaked: {info.value}"


def test_the_sweep_is_as_large_as_documented():
    assert len(CASES) >= 260, len(CASES)  # docs/reliability.md reports the count
