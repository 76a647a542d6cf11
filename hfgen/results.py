"""Raw run records and the one interval helper every published number goes through.

Every experiment or benchmark script in ``scripts/`` ends with [`write_record`], which writes one JSON file
under ``docs/results/raw/<method>/``: the exact command, the git commit (and whether the tree was dirty), the seeds,
the torch thread count, library versions, the device, the wall time, the settings (including each arm's tuning
budget) and every per-seed metric. Tables in ``docs/`` are rendered from these files by
``scripts/collect_results.py``; nothing is typed in by hand.

Summaries use [`interval`] (mean and two-sided 95% Student-t interval over seeds) and [`paired`] (the same
on per-seed differences, method minus baseline). A difference whose interval contains 0 is "no difference"
([`verdict`]).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAW_DIR = ROOT / "docs" / "results" / "raw"
RECORD_FIELDS = ("method", "name", "command", "commit", "dirty", "seeds", "torch_threads", "versions", "device",
                 "wall_s", "settings", "metrics", "created")
_LIBRARIES = ("torch", "transformers", "diffusers", "trl", "peft", "accelerate", "datasets", "numpy")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=RAW_DIR.parent, capture_output=True, text=True,
                              check=True).stdout.rstrip()  # not strip(): a porcelain line starts with a space
    except (OSError, subprocess.CalledProcessError):
        return ""


RUN_OUTPUTS = ("docs/results/raw/", "docs/figures/")  # what runs write; never an input of a run


def _dirty(outputs: Sequence[str | Path]) -> bool:
    """Whether tracked files differ from the commit, apart from run outputs (this run's figures, and the records and
    figures that runs write: another study's record in the same checkout does not change the code that ran)."""
    own = {_relative(f) for f in outputs}
    changed = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return any(path not in own and not path.startswith(RUN_OUTPUTS) for path in changed)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (how a record pins the figures it produced)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_record(method: str, name: str, *, seeds: Sequence[int], metrics: Mapping, settings: Mapping | None = None,
                 started: float | None = None, device: str = "cpu", raw_dir: str | Path | None = None,
                 figures: Sequence[str | Path] = ()) -> Path:
    """Write ``<raw_dir>/<method>/<name>.json`` atomically and return its path.

    ``metrics`` holds every per-seed value (e.g. ``{"nft": {"accuracy": [0.31, 0.29, ...]}}``, one entry per seed in
    ``seeds`` order); ``settings`` the run's configuration, including each arm's tuning budget; ``started`` the
    ``time.time()`` at the start of the run (for ``wall_s``); ``figures`` the image files the run wrote, recorded
    with their sha256 (paths relative to the repository root when they lie inside it), so that a figure in ``docs/``
    is shown only while a record that produced it exists.
    """
    if not method or not name or "/" in name or "/" in method:
        raise ValueError(f"method and name must be non-empty path components, got method={method!r}, name={name!r}")
    if not seeds:
        raise ValueError("seeds must list the seeds the run used")
    record = {
        "method": method,
        "name": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": _dirty(figures),
        "seeds": [int(s) for s in seeds],
        "torch_threads": _torch_threads(),
        "versions": _versions(),
        "device": device,
        "wall_s": None if started is None else round(time.time() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # 1, 5, 15 min, when the run ended: timings' context
        "settings": dict(settings or {}),
        "metrics": metrics,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": {_relative(f, _checkout(raw_dir)): file_digest(f) for f in figures},
    }
    folder = Path(raw_dir or RAW_DIR) / method
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(record, indent=1, sort_keys=False, default=float) + "\n")
    os.replace(staging, path)
    return path


def _checkout(raw_dir: str | Path | None) -> Path:
    """The repository root a records folder ``<root>/docs/results/raw`` belongs to (this checkout otherwise)."""
    raw = Path(raw_dir or RAW_DIR).resolve()
    return raw.parents[2] if raw.parts[-3:] == ("docs", "results", "raw") else ROOT


def _relative(path: str | Path, root: Path = ROOT) -> str:
    path = Path(path).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def read_record(path: str | Path) -> dict:
    """Load a record and check it has every field [`write_record`] writes (``ValueError`` naming the missing)."""
    record = json.loads(Path(path).read_text())
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(f"{path} is not a raw run record: missing {missing}")
    return record


def _t975(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` per-seed values with its two-sided 95% Student-t interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def format(self, digits: int = 3) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f} (1 seed, no interval)"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def interval(values: Sequence[float]) -> Interval:
    """Mean and 95% t-interval over seeds (the interval every table in ``docs/`` states)."""
    xs = [float(v) for v in values]
    if not xs or any(not math.isfinite(v) for v in xs):
        raise ValueError(f"values must be a non-empty sequence of finite numbers, got {values!r}")
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return Interval(mean, mean, mean, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in xs) / (n - 1))
    half = _t975(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired(method: Sequence[float], baseline: Sequence[float]) -> Interval:
    """Interval of the per-seed differences ``method - baseline`` (same seeds, same order)."""
    if len(method) != len(baseline):
        raise ValueError(f"paired needs one value per seed in both arms, got {len(method)} and {len(baseline)}")
    return interval([float(a) - float(b) for a, b in zip(method, baseline)])


def verdict(difference: Interval, higher_is_better: bool = True) -> str:
    """"better" / "worse" when the paired interval excludes 0, else "no difference" (or "1 seed")."""
    if difference.n < 2:
        return "1 seed"
    if difference.contains(0.0):
        return "no difference"
    return "better" if (difference.mean > 0) == higher_is_better else "worse"


def equivalent(difference: Interval, margin: float) -> bool:
    """Equivalence with a margin fixed in advance: the whole interval lies inside ``[-margin, margin]``."""
    return difference.n >= 2 and -margin <= difference.low and difference.high <= margin


def check_arms(record: Mapping, arms: Sequence[str], metrics: Sequence[str]) -> None:
    """``ValueError`` unless every arm in ``arms`` is in the record with, for every metric in ``metrics``, one finite
    number per seed (what a script test checks of a smoke-sized run: each compared arm actually ran)."""
    seeds = record["seeds"]
    for arm in arms:
        if arm not in record["metrics"]:
            raise ValueError(f"record {record['method']}/{record['name']}: arm {arm!r} missing "
                             f"(has {list(record['metrics'])})")
        for metric in metrics:
            values = record["metrics"][arm].get(metric)
            if not isinstance(values, list) or len(values) != len(seeds):
                raise ValueError(f"record {record['method']}/{record['name']}: {arm}.{metric} must hold one value per "
                                 f"seed {seeds}, got {values!r}")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ValueError(f"record {record['method']}/{record['name']}: {arm}.{metric} is not finite: {values}")
