"""Paired image data for diffusion bridges: digits and their edge maps, and paired-image folders.

- [`load_paired_digits`] / [`paired_digits_dataset`]: scikit-learn's 8x8 digits (upsampled,
  e.g. to 16x16) as targets ``x_0`` and their edge maps (Sobel gradient magnitude) as sources ``y``;
  a miniature of Edges2Handbags, offline.
- [`load_paired_image_folder`]: the layouts of the bridge papers' data sets, as a ``datasets``
  data set: pix2pix "aligned" files (Edges2Handbags, DIODE after DDBM's preprocessing: source and
  target side by side in one image) or two folders with matching file names.

Every loader yields columns ``source`` and ``target``, float tensors ``(C, H, W)`` in ``[-1, 1]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of ``(N, 1, H, W)`` images in [-1, 1], rescaled per image to [-1, 1]."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"`images` must have shape (N, 1, H, W), got {tuple(images.shape)}.")
    kernels = torch.stack([_SOBEL, _SOBEL.T]).unsqueeze(1).to(images)
    grad = torch.nn.functional.conv2d(torch.nn.functional.pad((images + 1) / 2, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = grad.pow(2).sum(1, keepdim=True).sqrt()
    peak = magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    return magnitude / peak * 2 - 1


def load_paired_digits(size: int = 16, split: str = "train", **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edges, digits)``: sources and targets, both ``(N, 1, size, size)`` in [-1, 1] (fixed seeded split)."""
    from hfgen.data.digits import load_digits_images

    digits, _ = load_digits_images(size=size, split=split, **kwargs)
    return edge_map(digits), digits


def paired_digits_dataset(size: int = 16, split: str = "train", **kwargs):
    """The edge -> digit pairs as a ``datasets.Dataset`` with columns ``source`` and ``target``."""
    from datasets import Dataset

    source, target = load_paired_digits(size=size, split=split, **kwargs)
    return Dataset.from_dict({"source": source.numpy(), "target": target.numpy()}).with_format("torch")


def load_paired_image_folder(
    root: str | Path,
    layout: str = "aligned",
    size: int | None = None,
    grayscale: bool = False,
    source_dir: str = "A",
    target_dir: str = "B",
    reverse: bool = False,
):
    """A paired-image folder as a ``datasets.Dataset`` with ``source``/``target`` tensors in [-1, 1].

    Args:
        root: for ``layout="aligned"`` a folder of images holding source | target side by side (pix2pix,
            DDBM's Edges2Handbags ``train/`` and DIODE folders); for ``"folders"`` a folder containing
            ``source_dir`` and ``target_dir`` with the same file names.
        size: resize both images to ``size x size`` (bicubic); ``None`` keeps them.
        grayscale: load single-channel images.
        reverse: swap source and target (e.g. photo -> edges).
    """
    from datasets import Dataset
    from PIL import Image

    root = Path(root)
    if layout not in ("aligned", "folders"):
        raise ValueError(f"`layout` must be 'aligned' or 'folders', got {layout!r}.")
    if not root.is_dir():
        raise FileNotFoundError(f"`root` {str(root)!r} is not a directory.")
    listing = lambda folder: sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)  # noqa: E731
    if layout == "aligned":
        pairs = [(p, None) for p in listing(root)]
    else:
        sources = {p.name: p for p in listing(root / source_dir)}
        targets = {p.name: p for p in listing(root / target_dir)}
        missing = sorted(set(sources) ^ set(targets))
        if missing:
            raise ValueError(f"Unpaired files in {root} ({source_dir} vs {target_dir}): {missing[:5]} ...")
        pairs = [(sources[n], targets[n]) for n in sorted(sources)]
    if not pairs:
        raise ValueError(f"No images found in {root}.")

    def to_tensor(image):
        image = image.convert("L" if grayscale else "RGB")
        if size is not None:
            image = image.resize((size, size), Image.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(array[None] if grayscale else array.transpose(2, 0, 1))

    def read(path_a, path_b):
        with Image.open(path_a) as image:
            if path_b is None:
                w, h = image.size
                a, b = image.crop((0, 0, w // 2, h)), image.crop((w // 2, 0, w, h))
            else:
                a, b = image.copy(), Image.open(path_b)
            return to_tensor(a), to_tensor(b)

    def transform(batch):
        out = {"source": [], "target": []}
        for path_a, path_b in zip(batch["path"], batch["pair_path"]):
            a, b = read(path_a, path_b or None)
            out["source"].append(b if reverse else a)
            out["target"].append(a if reverse else b)
        return out

    data = Dataset.from_dict({"path": [str(a) for a, _ in pairs], "pair_path": [str(b) if b else "" for _, b in pairs]})
    return data.with_transform(transform)
