"""English text that ships with Python: the ``pydoc_data`` help topics, tokenised for language models.

``pydoc_data.topics`` holds the language reference's help pages (about 470k characters of
English prose and code). [`pydoc_dataset`] splits them by topic into train and test, and cuts
each split's token stream into fixed-length blocks, so tests and demos get real text offline.
[`char_tokenizer`] and [`word_tokenizer`] build tokenizers over a text or a corpus, offline.
"""

from __future__ import annotations

import re


def pydoc_documents() -> list[str]:
    """The help topics of this Python's ``pydoc_data``, one document each, in a fixed order."""
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics)]


def char_tokenizer(text: str | None = None):
    """A character-level ``PreTrainedTokenizerFast`` over the characters of ``text`` (default: all pydoc topics).

    Ids 0-4 are ``[PAD] [UNK] [CLS] [SEP] [MASK]``; then one id per character, in sorted order.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted(set("\n\n".join(pydoc_documents()) if text is None else text))
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]",
    )


def word_tokenizer(corpus: list[str], max_length: int = 16):
    """Lower-cased word-level tokenizer over ``corpus`` with ``[PAD] [UNK] [CLS] [SEP]`` (BERT-style)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = sorted({w for text in corpus for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", eos_token="[SEP]", model_max_length=max_length)


def pydoc_dataset(tokenizer, seq_len: int = 64, test_every: int = 10):
    """A ``DatasetDict`` with ``train`` and ``test`` splits of ``input_ids`` blocks of ``seq_len`` tokens.

    Every ``test_every``-th topic goes to ``test``; each split's documents are joined by a blank line,
    tokenised without special tokens and cut into non-overlapping blocks (the remainder is dropped).
    """
    from datasets import Dataset, DatasetDict

    if seq_len < 1:
        raise ValueError(f"`seq_len` must be positive, got {seq_len}.")
    docs = pydoc_documents()
    splits = {"train": [d for i, d in enumerate(docs) if i % test_every], "test": docs[::test_every]}
    out = {}
    for name, split in splits.items():
        ids = tokenizer("\n\n".join(split), add_special_tokens=False)["input_ids"]
        blocks = [ids[i : i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
        out[name] = Dataset.from_dict({"input_ids": blocks})
    return DatasetDict(out)
