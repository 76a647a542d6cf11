"""Loaders of the real face data sets where they live, by path (all need a licence; none downloads):
[`load_disfa`], [`load_bp4d`] (AU occurrence), [`load_rafdb`], [`load_affectnet`] (emotion) and [`load_mfa_json`]
(images + multilevel descriptions). Each returns a ``datasets.Dataset`` with an ``image`` column (``datasets.Image``)
and label columns; [`subject_exclusive_folds`] splits a set so that no subject is in two folds.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from hfgen.data.faces import check_au_names

# The real data sets' label sets (standard protocols).
DISFA_AUS = ("AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU25", "AU26")
BP4D_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24")
RAFDB_EMOTIONS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}
AFFECTNET_EMOTIONS = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "angry",
                      7: "contempt"}


def subject_exclusive_folds(subjects, n_folds: int = 3, shuffle: bool = False, seed: int = 0
                            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-exclusive k-fold cross-validation, the protocol of BP4D / DISFA AU papers (3 folds).

    Every subject's frames fall in exactly one test fold, so no subject is in a fold's training and test
    parts at once. Subjects are assigned, largest first, to the fold with the fewest frames so far (ties:
    the lower fold), which balances the folds by frames; ``shuffle=True`` permutes the subjects with
    ``seed`` before the (stable) size sort, so equal-sized subjects are spread differently.

    Args:
        subjects (`Sequence`): one subject id per frame (e.g. ``dataset["subject"]`` of [`load_bp4d`]).
        n_folds (`int`): number of folds, at least 2 and at most the number of subjects.
        shuffle (`bool`), seed (`int`): see above; the default order is the sorted subject ids.

    Returns:
        `list[tuple[np.ndarray, np.ndarray]]`: ``(train_indices, test_indices)`` per fold, like scikit-learn's
        ``GroupKFold.split``.
    """
    subjects = np.asarray(list(subjects), dtype=object)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"`n_folds` must be an integer >= 2, got {n_folds!r}.")
    if len(subjects) == 0:
        raise ValueError("`subjects` is empty.")
    ids = sorted({str(s) for s in subjects})
    if len(ids) != len({s for s in subjects}):
        raise ValueError("`subjects` has distinct ids with the same string form; use one id type.")
    if n_folds > len(ids):
        raise ValueError(f"`n_folds` ({n_folds}) is larger than the number of subjects ({len(ids)}).")
    keys = np.array([str(s) for s in subjects])
    if shuffle:
        ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    counts = {s: int((keys == s).sum()) for s in ids}
    fold_of, sizes = {}, [0] * n_folds
    for s in sorted(ids, key=lambda s: -counts[s]):  # stable: equal sizes keep the sorted / shuffled order
        f = int(np.argmin(sizes))
        fold_of[s] = f
        sizes[f] += counts[s]
    fold = np.array([fold_of[k] for k in keys])
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_folds)]


def _image_dataset(columns: dict, image_paths: list[str]):
    import datasets

    if not image_paths:
        raise ValueError("No labelled images were found; check the root folder and the layout.")
    return datasets.Dataset.from_dict({"image": image_paths, **columns}).cast_column("image", datasets.Image())


def _index_frames(folder: Path) -> dict[int, str]:
    """``{frame number: path}`` of the images in ``folder`` whose stem ends in a number."""
    out = {}
    for p in sorted(folder.glob("*")):
        m = re.search(r"(\d+)$", p.stem)
        if m and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"):
            out[int(m.group(1))] = str(p)
    return out


def load_disfa(root, au_names=DISFA_AUS, threshold: int = 2, image_dir: str = "Images"):
    """DISFA AU occurrence (an AU counts as present at intensity >= ``threshold``, the usual protocol).

    Layout: ``root/ActionUnit_Labels/<SN>/<SN>_au<N>.txt`` (lines ``frame,intensity``) and extracted
    frames ``root/<image_dir>/<SN>/<...frame number>.jpg``. Columns: ``image``, ``subject``, ``frame``,
    ``au_labels`` (``[K]`` floats in ``au_names`` order).
    """
    au_names = check_au_names(au_names)
    root = Path(root)
    paths, subjects, frames, labels = [], [], [], []
    for subject_dir in sorted((root / "ActionUnit_Labels").glob("*")):
        sn = subject_dir.name
        per_au = {}
        for au in au_names:
            f = subject_dir / f"{sn}_{au.lower()}.txt"
            if not f.is_file():
                raise FileNotFoundError(f"DISFA label file {f} is missing (asked for {au}).")
            per_au[au] = {int(r[0]): int(r[1]) for r in csv.reader(f.read_text().split()) if r}
        images = _index_frames(root / image_dir / sn)
        for frame in sorted(set.intersection(*(set(v) for v in per_au.values())) & set(images)):
            paths.append(images[frame])
            subjects.append(sn)
            frames.append(frame)
            labels.append([float(per_au[a][frame] >= threshold) for a in au_names])
    return _image_dataset({"subject": subjects, "frame": frames, "au_labels": labels}, paths)


def load_bp4d(root, au_names=BP4D_AUS, image_dir: str = "2DFaces"):
    """BP4D AU occurrence. Frames with an unknown label (9) in any asked AU are skipped.

    Layout: ``root/AUCoding/AU_OCC/<subject>_<task>.csv`` (header ``Frame,1,2,4,...``) and frames
    ``root/<image_dir>/<subject>/<task>/<...frame number>.jpg``. Columns: ``image``, ``subject``,
    ``task``, ``frame``, ``au_labels``.
    """
    au_names = check_au_names(au_names)
    root = Path(root)
    paths, subjects, tasks, frames, labels = [], [], [], [], []
    for f in sorted((root / "AUCoding" / "AU_OCC").glob("*.csv")):
        subject, _, task = f.stem.partition("_")
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        missing = [a for a in au_names if rows and a[2:] not in rows[0]]
        if missing:
            raise ValueError(f"{f} has no columns for {missing}.")
        images = _index_frames(root / image_dir / subject / task)
        for r in rows:
            frame, values = int(r["Frame"]), [int(r[a[2:]]) for a in au_names]
            if frame in images and 9 not in values:
                paths.append(images[frame])
                subjects.append(subject)
                tasks.append(task)
                frames.append(frame)
                labels.append([float(v) for v in values])
    return _image_dataset({"subject": subjects, "task": tasks, "frame": frames, "au_labels": labels}, paths)


def load_rafdb(root, split: str = "train", aligned: bool = True):
    """RAF-DB basic emotions (7 classes). ``split`` is ``'train'`` or ``'test'``.

    Layout: ``root/EmoLabel/list_patition_label.txt`` (lines ``train_00001.jpg 5``, labels 1..7) and
    ``root/Image/aligned/train_00001_aligned.jpg`` (or ``root/Image/original/train_00001.jpg``).
    Columns: ``image``, ``emotion`` (names as [`hfgen.data.faces.EMOTIONS`]).
    """
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    root = Path(root)
    paths, emotions = [], []
    for line in (root / "EmoLabel" / "list_patition_label.txt").read_text().splitlines():
        if not line.strip():
            continue
        name, label = line.split()
        if not name.startswith(split):
            continue
        stem, ext = name.rsplit(".", 1)
        path = root / "Image" / ("aligned" if aligned else "original") / (f"{stem}_aligned.{ext}" if aligned else name)
        if path.is_file():
            paths.append(str(path))
            emotions.append(RAFDB_EMOTIONS[int(label)])
    return _image_dataset({"emotion": emotions}, paths)


def load_affectnet(root, split: str = "validation", num_classes: int = 7):
    """AffectNet emotions: 7 classes (no contempt) or 8; non-emotion labels (8-10) are skipped.

    Layout: ``root/<split>.csv`` (``training`` / ``validation``) with columns ``subDirectory_filePath``
    and ``expression``, images under ``root/Manually_Annotated_Images/``. Columns: ``image``, ``emotion``.
    """
    if num_classes not in (7, 8):
        raise ValueError(f"`num_classes` must be 7 or 8, got {num_classes!r}.")
    if split not in ("training", "validation"):
        raise ValueError(f"`split` must be 'training' or 'validation', got {split!r}.")
    root = Path(root)
    paths, emotions = [], []
    with open(root / f"{split}.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            label = int(r["expression"])
            path = root / "Manually_Annotated_Images" / r["subDirectory_filePath"]
            if label < num_classes and path.is_file():
                paths.append(str(path))
                emotions.append(AFFECTNET_EMOTIONS[label])
    return _image_dataset({"emotion": emotions}, paths)


def load_mfa_json(path, image_root=None, au_names=None):
    """MFA-style multilevel descriptions from a JSON list or JSON-lines file.

    Each record: ``{"image": "relative/or/absolute.jpg", "global_description": "...",
    "au_descriptions": {"AU1": "...", ...}, "aus": {"AU1": 0 or 1, ...} (optional),
    "emotion": "happy" (optional)}``. ``au_names`` (default: the first record's AUs, in order) fixes
    the order of ``au_texts`` and ``au_labels``; every record must describe every AU.
    Columns: ``image``, ``global_text``, ``au_texts``, and ``au_labels`` / ``emotion`` when given.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8").strip()
    records = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    if not records:
        raise ValueError(f"{path} holds no records.")
    au_names = check_au_names(au_names or list(records[0]["au_descriptions"]))
    image_root = Path(image_root) if image_root is not None else path.parent
    cols: dict[str, list] = {"global_text": [], "au_texts": []}
    paths = []
    for i, r in enumerate(records):
        missing = [a for a in au_names if a not in r.get("au_descriptions", {})]
        if missing:
            raise ValueError(f"{path} record {i} has no descriptions for {missing}.")
        paths.append(str(image_root / r["image"]))
        cols["global_text"].append(r["global_description"])
        cols["au_texts"].append([r["au_descriptions"][a] for a in au_names])
        if "aus" in r:
            cols.setdefault("au_labels", []).append([float(r["aus"][a]) for a in au_names])
        if "emotion" in r:
            cols.setdefault("emotion", []).append(r["emotion"])
    for key in ("au_labels", "emotion"):
        if key in cols and len(cols[key]) != len(records):
            raise ValueError(f"{path}: some records have {key!r} and some do not.")
    return _image_dataset(cols, paths)
