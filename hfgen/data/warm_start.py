"""A short supervised warm start for RL-from-verifier training (NFT, RFT, GRPO) on any prompt -> answer data.

RL from a binary verifier learns only from *mixed* groups, questions whose sampled answers are partly right
and partly wrong: a model that gets every answer wrong (a cold start) or right gives zero signal. A few
teacher-forced steps on reference answers make groups mixed; [`sft_warm_start`] does them in place.

Example::

    >>> from hfgen.data.warm_start import sft_warm_start
    >>> sft_warm_start(model, tokenizer, dataset, steps=150, completion_column="answer")  # doctest: +SKIP
"""

from __future__ import annotations


def sft_warm_start(model, tokenizer, dataset, steps: int = 150, learning_rate: float = 3e-3, batch_size: int = 64,
                   seed: int = 0, progress_bar: bool = False, *, prompt_column: str = "prompt",
                   completion_column: str = "answer"):
    """Teacher-forced supervised warm start on ``prompt -> completion<eos>`` (loss on the completion tokens only).

    Args:
        model: a causal LM (a ``PeftModel`` trains its adapter only); trained in place.
        tokenizer: its tokenizer; needs ``pad_token_id`` and ``eos_token``.
        dataset: rows with a ``prompt_column`` and a ``completion_column`` of strings (a ``datasets.Dataset``
            or a list of dicts).
        steps, learning_rate, batch_size, seed: AdamW steps on random batches of ``batch_size`` rows.
        prompt_column, completion_column: the column names (``"prompt"`` / ``"answer"``; TRL's prompt-completion
            data use ``completion_column="completion"``).

    Returns the model (in eval mode), so that sampled groups contain both right and wrong answers.
    """
    import torch
    from tqdm.auto import tqdm

    if steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    if len(dataset) == 0:
        raise ValueError("`dataset` is empty.")
    first = dataset[0]
    for name, column in (("prompt_column", prompt_column), ("completion_column", completion_column)):
        if column not in first:
            raise ValueError(f"`{name}`={column!r} is not a column of `dataset` (columns: {sorted(first)}).")
    if tokenizer.pad_token_id is None or tokenizer.eos_token is None:
        raise ValueError("`tokenizer` needs a pad token and an eos token.")
    texts = [(row[prompt_column], row[completion_column] + tokenizer.eos_token) for row in dataset]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    device = next(model.parameters()).device
    model.train()
    for _ in tqdm(range(steps), desc="SFT warm start", disable=not progress_bar):
        idx = torch.randint(len(texts), (batch_size,), generator=generator).tolist()
        prompts = tokenizer([texts[i][0] for i in idx], add_special_tokens=False)["input_ids"]
        answers = tokenizer([texts[i][1] for i in idx], add_special_tokens=False)["input_ids"]
        length = max(len(p) + len(a) for p, a in zip(prompts, answers))
        input_ids = torch.full((batch_size, length), tokenizer.pad_token_id)
        labels = torch.full((batch_size, length), -100)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        for row, (p, a) in enumerate(zip(prompts, answers)):  # right padding for teacher forcing
            input_ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            labels[row, len(p) : len(p) + len(a)] = torch.tensor(a)
            attention_mask[row, : len(p) + len(a)] = 1
        loss = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                     labels=labels.to(device)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model
