"""A verifiable arithmetic task for RL-from-verifier trainers (NFT, RFT, GRPO) that runs on a CPU.

The task is multi-operand integer arithmetic written as a prompt, ``"12+7="``, whose completion is the
exact decimal answer followed by ``<eos>``. Everything is built offline:

- [`arithmetic_dataset`]: a ``datasets.DatasetDict`` (``train`` / ``test``) with columns
  ``prompt`` and ``answer``; the test split holds out whole problems, so it measures generalisation;
- [`arithmetic_reward`]: the binary verifier in TRL's reward-function format
  (``f(completions, answer, **kwargs) -> list[float]``); dataset columns reach it by name;
- [`arithmetic_tokenizer`]: a character-level ``PreTrainedTokenizerFast`` over 15 symbols;
- [`tiny_causal_lm`]: a ``Qwen2ForCausalLM`` built from a config (about 0.1 M parameters), hfgen's
  [`hfgen.testing.tiny_models.tiny_qwen2_lm`] over this tokenizer;
- [`sft_warm_start`]: a short teacher-forced warm start, so that groups of sampled answers are mixed
  (RL from a binary verifier learns nothing from groups that are all right or all wrong); it lives in
  [`hfgen.data.warm_start`] (any prompt -> answer data) and is re-exported here;
- [`arithmetic_accuracy`]: exact-match accuracy of greedy (or sampled, pass@k) answers.

Example::

    >>> from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_reward
    >>> data = arithmetic_dataset(max_operand=10, seed=0)
    >>> row = data["train"][0]
    >>> arithmetic_reward([row["answer"], "x"], answer=[row["answer"]] * 2)
    [1.0, 0.0]
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from hfgen.data.warm_start import sft_warm_start  # noqa: F401 (its former home; the import keeps working)

VOCAB = ["<pad>", "<eos>", *"0123456789", "+", "-", "="]


def arithmetic_dataset(
    max_operand: int = 20,
    num_operands: int = 2,
    operators: str = "+",
    test_fraction: float = 0.2,
    max_problems: int | None = None,
    seed: int = 0,
):
    """All problems ``a op b [op c ...] =`` with operands in ``[0, max_operand)``, split into train and test.

    Args:
        max_operand: operands are drawn from ``range(max_operand)``.
        num_operands: how many operands each problem has (2 gives ``a+b=``; 3 a two-step problem).
        operators: the operators to use, a subset of ``"+-"``; answers may be negative with ``-``.
        test_fraction: fraction of problems held out in the ``test`` split.
        max_problems: keep at most this many problems (a random subset), or all if ``None``.
        seed: seed of the shuffle and of the split.

    Returns:
        ``datasets.DatasetDict`` with ``train`` and ``test`` splits; columns ``prompt`` (``str``) and
        ``answer`` (``str``, the exact decimal answer).
    """
    from datasets import Dataset, DatasetDict

    if max_operand < 1:
        raise ValueError(f"`max_operand` must be at least 1, got {max_operand}.")
    if num_operands < 2:
        raise ValueError(f"`num_operands` must be at least 2, got {num_operands}.")
    if not operators or set(operators) - set("+-"):
        raise ValueError(f"`operators` must be a non-empty subset of '+-', got {operators!r}.")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in [0, 1), got {test_fraction}.")

    problems = []
    for operands in itertools.product(range(max_operand), repeat=num_operands):
        for ops in itertools.product(operators, repeat=num_operands - 1):
            expression = str(operands[0]) + "".join(op + str(x) for op, x in zip(ops, operands[1:]))
            problems.append({"prompt": expression + "=", "answer": str(eval(expression))})  # digits and +- only
    rng = random.Random(seed)
    rng.shuffle(problems)
    if max_problems is not None:
        problems = problems[:max_problems]
    num_test = int(round(test_fraction * len(problems)))
    columns = lambda rows: {"prompt": [r["prompt"] for r in rows], "answer": [r["answer"] for r in rows]}  # noqa: E731
    return DatasetDict(train=Dataset.from_dict(columns(problems[num_test:])),
                       test=Dataset.from_dict(columns(problems[:num_test])))


def _completion_text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational format: the last message's content
        completion = completion[-1]["content"]
    return completion.replace(" ", "").replace("<eos>", "").strip()


def arithmetic_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """The binary verifier: ``1.0`` if a completion is exactly the answer, else ``0.0``.

    A TRL reward function: ``GRPOTrainer`` (and ``NFTTrainer``) call it with the decoded
    ``completions`` and every dataset column as a keyword argument, here ``answer``. Truncated or
    padded answers (``"19 5"``) are wrong.
    """
    return [float(_completion_text(c) == str(a)) for c, a in zip(completions, answer, strict=True)]


def arithmetic_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` over ``<pad> <eos> 0-9 + - =`` (left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab={tok: i for i, tok in enumerate(VOCAB)}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", padding_side="left")


def tiny_causal_lm(tokenizer=None, **config):
    """[`hfgen.testing.tiny_models.tiny_qwen2_lm`] over ``tokenizer`` (default: [`arithmetic_tokenizer`]): a
    ``Qwen2ForCausalLM`` built from a config, sized for the arithmetic task."""
    from hfgen.testing.tiny_models import tiny_qwen2_lm

    return tiny_qwen2_lm(tokenizer or arithmetic_tokenizer(), **config)


def arithmetic_accuracy(model, tokenizer, dataset, num_samples: int = 1, temperature: float = 1.0,
                        max_new_tokens: int = 4, batch_size: int = 512, seed: int = 0) -> float:
    """Exact-match accuracy: greedy when ``num_samples == 1``, else pass@``num_samples`` at ``temperature``."""
    import torch

    prompts, answers = list(dataset["prompt"]), list(dataset["answer"])
    if not prompts:
        raise ValueError("`dataset` is empty.")
    solved = [False] * len(prompts)
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False)
            for _ in range(num_samples):
                sampling = {"do_sample": True, "temperature": temperature, "top_k": None} if num_samples > 1 else {
                    "do_sample": False}
                out = model.generate(**batch, max_new_tokens=max_new_tokens, **sampling,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
                rewards = arithmetic_reward(texts, answers[start : start + batch_size])
                for i, r in enumerate(rewards):
                    solved[start + i] |= r == 1.0
    model.train(was_training)
    return sum(solved) / len(solved)


def arithmetic_splits(max_operand: int = 100, validation_size: int = 1000, test_fraction: float = 0.2, seed: int = 0,
                      **kwargs):
    """[`arithmetic_dataset`] with a ``validation`` split taken from its training problems.

    Model selection (a learning rate, a checkpoint) is made on ``validation``; ``test`` is only reported. The three
    splits hold disjoint problems. ``kwargs`` go to [`arithmetic_dataset`] (``num_operands``, ``operators``, ...).

    Returns:
        ``datasets.DatasetDict`` with ``train``, ``validation`` and ``test`` splits (columns ``prompt``, ``answer``).
    """
    from datasets import DatasetDict

    data = arithmetic_dataset(max_operand=max_operand, test_fraction=test_fraction, seed=seed, **kwargs)
    if not 0 < validation_size < len(data["train"]):
        raise ValueError(f"`validation_size` must be in [1, {len(data['train']) - 1}] (the training problems), "
                         f"got {validation_size}.")
    rest = data["train"].num_rows - validation_size
    return DatasetDict(train=data["train"].select(range(rest)),
                       validation=data["train"].select(range(rest, data["train"].num_rows)), test=data["test"])


def sample_arithmetic_answers(model, tokenizer, dataset, num_samples: int | None = None, temperature: float = 1.0,
                              greedy: bool = False, max_new_tokens: int = 4, batch_size: int = 512,
                              seed: int = 0) -> dict:
    """Sample ``num_samples`` answers per problem (default 16), or one greedy answer, on the model's device; score them.

    Returns:
        ``{"num_correct": [int per problem], "num_samples": int, "entropy": float}``: how many sampled answers of
        each problem are exactly right, and the policy's mean token entropy (nats, at temperature 1) along the
        sampled answers, over every answer token up to and including ``<eos>``.
    """
    import torch

    if num_samples is None:
        num_samples = 1 if greedy else 16
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples}.")
    if greedy and num_samples != 1:
        raise ValueError(f"`greedy=True` draws one answer per problem, got `num_samples`={num_samples}.")
    prompts, answers = list(dataset["prompt"]), list(dataset["answer"])
    if not prompts:
        raise ValueError("`dataset` is empty.")
    device = next(model.parameters()).device
    num_correct, entropy_sum, token_count = [0] * len(prompts), 0.0, 0
    sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature, "top_k": None,
                                                    "top_p": None}
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(device)
            for _ in range(num_samples):
                out = model.generate(**batch, max_new_tokens=max_new_tokens, **sampling, output_logits=True,
                                     return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
                new = out.sequences[:, batch["input_ids"].shape[1] :]
                ended_before = torch.cumsum(new == tokenizer.eos_token_id, dim=1) - (new == tokenizer.eos_token_id).long()
                active = (ended_before == 0).float()  # tokens up to and including the first <eos>
                log_p = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
                entropy = -(log_p.exp() * log_p).sum(-1)
                entropy_sum += float((entropy * active).sum())
                token_count += int(active.sum())
                texts = tokenizer.batch_decode(new, skip_special_tokens=True)
                for i, reward in enumerate(arithmetic_reward(texts, answers[start : start + batch_size])):
                    num_correct[start + i] += int(reward == 1.0)
    model.train(was_training)
    return {"num_correct": num_correct, "num_samples": num_samples, "entropy": entropy_sum / max(token_count, 1)}


def pass_at_k(num_correct: list[int], num_samples: int, k: int) -> float:
    """The unbiased pass@k estimator from ``num_samples`` answers per problem (Chen et al. 2021, arXiv 2107.03374).

    For a problem with ``c`` correct answers among ``n``: ``1 - C(n - c, k) / C(n, k)``, the probability that ``k``
    answers drawn without replacement from the ``n`` hold a correct one; averaged over problems.
    """
    from math import comb

    if not 1 <= k <= num_samples:
        raise ValueError(f"`k` must be in [1, {num_samples}] (`num_samples`), got {k}.")
    if not num_correct or any(not 0 <= c <= num_samples for c in num_correct):
        raise ValueError(f"`num_correct` must be a non-empty list of counts in [0, {num_samples}].")
    return sum(1.0 - comb(num_samples - c, k) / comb(num_samples, k) for c in num_correct) / len(num_correct)
