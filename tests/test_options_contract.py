"""The options contract: every field a trainer's config inherits from TRL or transformers is honoured, refused with a
clear error, or not applicable (with a reason), and a field added by a new release fails until it is classified.

The honoured NFT fields that change the objective are checked against what they do in ``GRPOTrainer``.
"""

import dataclasses
import importlib

import pytest
import torch
from transformers import TrainingArguments
from trl import GRPOConfig

from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_tokenizer, tiny_causal_lm
from hfgen.trainers.options import OptionsContract

# (config module, config class, contract name, the TRL/transformers parent it inherits)
CONTRACTS = [
    ("hfgen.trainers.nft.nft_config", "NFTConfig", "NFT_OPTIONS", GRPOConfig),
    ("hfgen.trainers.ddo.ddo_config", "DDOConfig", "DDO_OPTIONS", TrainingArguments),
    ("hfgen.trainers.gft.gft_config", "GFTConfig", "GFT_OPTIONS", TrainingArguments),
    ("hfgen.trainers.mf2.mf2_config", "MF2TrainingConfig", "MF2_OPTIONS", TrainingArguments),
    ("hfgen.trainers.masked_diffusion.masked_diffusion_config", "MaskedDiffusionConfig", "MASKED_DIFFUSION_OPTIONS",
     TrainingArguments),
    ("hfgen.trainers.consistency_bridge.bridge_config", "BridgeConfig", "BRIDGE_OPTIONS", TrainingArguments),
    ("hfgen.trainers.consistency_bridge.consistency_bridge_config", "ConsistencyBridgeConfig", "BRIDGE_OPTIONS",
     TrainingArguments),
    ("hfgen.trainers.consistency_distillation.consistency_distillation_config", "ConsistencyDistillationConfig",
     "CONSISTENCY_DISTILLATION_OPTIONS", TrainingArguments),
    ("hfgen.trainers.sequential_rec.sequential_rec_config", "SequentialRecConfig", "SEQUENTIAL_REC_OPTIONS",
     TrainingArguments),
]
IDS = [c[1] for c in CONTRACTS]

# a value other than the default for every refused field of every contract
NON_DEFAULT = {
    "label_smoothing_factor": 0.1, "neftune_noise_alpha": 5.0, "use_liger_kernel": True,
    "liger_kernel_config": {"rms_norm": True}, "remove_unused_columns": True, "trust_remote_code": True,
    "bf16_full_eval": True, "fp16_full_eval": True,
    "epsilon": 0.3, "epsilon_high": 0.28, "delta": 2.0, "sapo_temperature_neg": 2.0, "sapo_temperature_pos": 2.0,
    "vespo_k_pos": 1.0, "vespo_lambda_pos": 1.0, "vespo_k_neg": 1.0, "vespo_lambda_neg": 1.0,
    "importance_sampling_level": "sequence", "scale_rewards": "none",
    "multi_objective_aggregation": "normalize_then_sum", "top_entropy_quantile": 0.5,
    "off_policy_mask_threshold": 0.5, "entropy_coef": 0.01, "use_adaptive_entropy": True, "entropy_coef_min": 0.1,
    "entropy_coef_max": 0.5, "entropy_coef_delta": 0.01, "entropy_target": 0.3,
}


def test_every_registered_training_config_has_a_contract():
    import hfgen

    registered = set()
    for info in hfgen.list_methods():
        for name in info.components:
            component = info.load_component(name) if name.endswith("Config") else None
            if isinstance(component, type) and issubclass(component, TrainingArguments):
                registered.add(component)
    assert registered and registered <= {_config_class(module, config) for module, config, _, _ in CONTRACTS}


def _contract(module, name):
    return getattr(importlib.import_module(module), name)


def _config_class(module, name):
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "config", "contract", "parent"), CONTRACTS, ids=IDS)
def test_every_inherited_field_is_in_exactly_one_list(module, config, contract, parent):
    options = _contract(module, contract)
    assert options.parent is parent
    assert issubclass(_config_class(module, config), parent)
    assert options.problems() == []
    classified = set(options.honoured) | set(options.refused) | set(options.not_applicable)
    assert classified == {f.name for f in dataclasses.fields(parent)}
    assert all(note.strip() for notes in (options.honoured, options.refused, options.not_applicable)
               for note in notes.values())


@pytest.mark.parametrize(("module", "contract"), [("hfgen.trainers.nft.nft_config", "NFT_OPTIONS"),
                                                  ("hfgen.trainers.ddo.ddo_config", "DDO_OPTIONS")])
def test_a_field_added_by_a_new_release_fails_until_classified(module, contract):
    options = _contract(module, contract)
    newer_parent = dataclasses.make_dataclass("NewerRelease", [("shiny_new_option", float, dataclasses.field(
        default=0.0))], bases=(options.parent,))
    problems = dataclasses.replace(options, parent=newer_parent).problems()
    assert problems == ["`shiny_new_option` of NewerRelease is in no list"]
    classified = options.with_changes(parent=newer_parent, refused={"shiny_new_option": "use nothing"})
    assert classified.problems() == []


def test_a_field_in_two_lists_or_a_stale_name_fails():
    options = _contract("hfgen.trainers.nft.nft_config", "NFT_OPTIONS")
    doubled = dataclasses.replace(options, refused={**options.refused, "beta": "twice"})
    assert doubled.problems() == ["`beta` of GRPOConfig is in honoured and refused"]
    stale = dataclasses.replace(options, not_applicable={**options.not_applicable, "removed_option": "gone"})
    assert stale.problems() == ["`removed_option` (not_applicable) is not a field of GRPOConfig"]


@pytest.mark.parametrize(("module", "config", "contract", "parent"), CONTRACTS, ids=IDS)
def test_every_refused_field_is_refused_at_construction_naming_it(module, config, contract, parent):
    options, config_class = _contract(module, contract), _config_class(module, config)
    assert set(options.refused) <= set(NON_DEFAULT)
    for name, instead in options.refused.items():
        with pytest.raises(ValueError, match=f"`{name}`.*{config_class.__name__}") as error:
            config_class(output_dir="unused", use_cpu=True, **{name: NON_DEFAULT[name]})
        assert instead in str(error.value)


def test_defaults_and_honoured_fields_are_accepted():
    from hfgen.trainers import DDOConfig, NFTConfig

    NFTConfig(output_dir="unused", use_cpu=True, bf16=False, beta=0.1, num_iterations=2,
              mask_truncated_completions=True, reward_weights=[1.0], sync_ref_model=True)
    DDOConfig(output_dir="unused", use_cpu=True, max_grad_norm=0.5, seed=3)


def test_check_compares_with_the_config_classes_own_default():
    @dataclasses.dataclass
    class Parent:
        option: int = 1

    @dataclasses.dataclass
    class Child(Parent):
        option: int = 2

    options = OptionsContract(Parent, honoured={}, refused={"option": "use nothing"}, not_applicable={})
    options.check(Child())
    with pytest.raises(ValueError, match="`option`"):
        options.check(Child(option=1))


# ------------------------------------------------------------- honoured NFT fields act as in GRPOTrainer

G = 4


@pytest.fixture(scope="module")
def data():
    return arithmetic_dataset(max_operand=10, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return arithmetic_tokenizer()


def half_right(completions, **kwargs):
    """In every group the first half of the answers are correct."""
    return [float(i % G < G // 2) for i in range(len(completions))]


def _trainer(tokenizer, data, tmp_path, model=None, **kwargs):
    from hfgen.trainers import NFTConfig, NFTTrainer

    model = model if model is not None else tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    defaults = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                    report_to="none", save_strategy="no", disable_tqdm=True, per_device_train_batch_size=2 * G,
                    num_generations=G, max_completion_length=4, learning_rate=1e-3, logging_steps=1, seed=0)
    trainer = NFTTrainer(model=model, reward_funcs=half_right, args=NFTConfig(**{**defaults, **kwargs}),
                         train_dataset=data["train"], processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def _generate(trainer, data):
    inputs = [dict(data["train"][j]) for j in range(2) for _ in range(G)]
    torch.manual_seed(0)
    return trainer._generate_and_score_completions(inputs)


def _count_generations(trainer):
    calls = []
    generate = trainer._generate_and_score_completions

    def counted(inputs):
        output = generate(inputs)
        calls.append(output)
        return output

    trainer._generate_and_score_completions = counted
    return calls


@pytest.mark.parametrize("num_iterations", [1, 2])
def test_num_iterations_reuses_each_generation_batch_as_grpo_does(tokenizer, data, tmp_path, num_iterations):
    trainer = _trainer(tokenizer, data, tmp_path, num_iterations=num_iterations, max_steps=2, max_refill_rounds=0)
    calls = _count_generations(trainer)
    trainer.train()
    assert len(calls) == 2 // num_iterations  # one generation per `num_iterations` optimizer steps
    # reused batches carry pi_old (NFT's ratio R is then not 1 on the second pass), as GRPO's do
    assert all((output.get("old_per_token_logps") is not None) == (num_iterations > 1) for output in calls)


def test_mask_truncated_completions_takes_truncated_answers_out_of_the_loss(tokenizer, data, tmp_path):
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    masked = _trainer(tokenizer, data, tmp_path, model=model, mask_truncated_completions=True, max_completion_length=2)
    plain = _trainer(tokenizer, data, tmp_path, model=model, max_completion_length=2)
    batch_masked, batch_plain = _generate(masked, data), _generate(plain, data)
    assert torch.equal(batch_masked["completion_ids"], batch_plain["completion_ids"])
    # TRL's rule: an answer is truncated when its last token is neither end-of-sequence nor padding
    ends = torch.tensor([tokenizer.eos_token_id, tokenizer.pad_token_id])
    truncated = ~torch.isin(batch_plain["completion_ids"][:, -1], ends)
    assert truncated.any()
    assert batch_masked["completion_mask"][truncated].sum() == 0
    assert torch.equal(batch_masked["completion_mask"][~truncated], batch_plain["completion_mask"][~truncated])
    # the gradient no longer depends on the truncated answers (NFT's loss is 0 on-policy; its gradient is not)
    params = [p for p in model.parameters() if p.requires_grad]

    def grad(trainer, batch):
        return torch.cat([g.flatten() for g in torch.autograd.grad(trainer.compute_loss(model, batch), params)])

    kept = {k: v[~truncated] if torch.is_tensor(v) and v.dim() > 0 else v for k, v in batch_masked.items()}
    share = (~truncated).sum() / truncated.numel()  # dr_grpo divides by the number of answers
    assert torch.allclose(grad(masked, batch_masked), grad(masked, kept) * share, atol=1e-7)
    assert not torch.allclose(grad(plain, batch_plain), grad(masked, batch_masked), atol=1e-5)


def test_beta_adds_the_k3_kl_to_the_reference_model_as_grpo_does(tokenizer, data, tmp_path):
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    model.save_pretrained(tmp_path / "base")  # TRL loads the reference model from the policy's path
    model = type(model).from_pretrained(tmp_path / "base")
    model.train()
    with torch.no_grad():  # move the policy away from the reference so that the KL is not zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    beta = 0.5
    with_kl = _trainer(tokenizer, data, tmp_path, model=model, beta=beta, loss_type="bnpo")
    without = _trainer(tokenizer, data, tmp_path, model=model, loss_type="bnpo")
    batch = _generate(with_kl, data)
    logps = with_kl._get_per_token_logps_and_entropies(
        model, torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
        torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1), batch["completion_ids"].size(1))[0]
    ref = batch["ref_per_token_logps"]
    k3 = torch.exp(ref - logps) - (ref - logps) - 1  # GRPO's estimator (on-policy: the bias correction is x1)
    mask = batch["completion_mask"]
    expected_kl = (k3 * mask).sum() / mask.sum()
    with torch.no_grad():
        difference = with_kl.compute_loss(model, batch) - without.compute_loss(model, batch)
    assert expected_kl > 1e-4
    assert torch.allclose(difference, beta * expected_kl, rtol=1e-4)
    assert with_kl._metrics["train"]["kl"][-1] == pytest.approx(expected_kl.item(), rel=1e-4)
    assert "kl" not in without._metrics["train"]


def test_reward_weights_weigh_the_sum_that_decides_correctness(tokenizer, data, tmp_path):
    from hfgen.trainers import NFTConfig, NFTTrainer

    def always_one(completions, **kwargs):
        return [1.0] * len(completions)

    args = dict(output_dir=str(tmp_path / "w"), use_cpu=True, bf16=False, report_to="none", num_generations=G,
                per_device_train_batch_size=2 * G, max_completion_length=4, correct_threshold=0.5)
    model = tiny_causal_lm(tokenizer, hidden_size=32, intermediate_size=64, seed=0)
    for weights, expected_rate in [([1.0, 0.0], 0.5), ([1.0, 1.0], 1.0), ([0.0, 0.25], 0.0)]:
        trainer = NFTTrainer(model=model, reward_funcs=[half_right, always_one], train_dataset=data["train"],
                             processing_class=tokenizer,
                             args=NFTConfig(**args, reward_weights=weights, max_refill_rounds=0))
        batch = _generate(trainer, data)
        assert batch["nft_rq"].unique().tolist() == [expected_rate], weights


def test_activation_checkpointing_is_refused_at_construction_for_a_model_trainer_cannot_checkpoint(tmp_path):
    from diffusers import DDPMScheduler

    from hfgen.testing import tiny_models
    from hfgen.trainers import DDOConfig, DDOTrainer

    images = [{"pixel_values": torch.zeros(1, 8, 8)} for _ in range(2)]
    args = DDOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", gradient_checkpointing=True)
    with pytest.raises(ValueError, match="activation_checkpointing.*enable_gradient_checkpointing"):
        DDOTrainer(tiny_models.tiny_unet2d(0, in_channels=1), args=args, train_dataset=images, fake_dataset=images,
                   noise_scheduler=DDPMScheduler(num_train_timesteps=10))
    tokens = [{"input_ids": torch.tensor([1, 2, 3])} for _ in range(2)]  # a transformers model: Trainer's own switch
    trainer = DDOTrainer(tiny_models.tiny_llama(pad_token_id=0), args=args, train_dataset=tokens, fake_dataset=tokens)
    assert trainer.args.activation_checkpointing
