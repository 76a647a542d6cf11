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
