"""The main job: run each method's registered demo and print a summary table.

A demo is a function ``run(output_dir: pathlib.Path, seed: int = 0) -> DemoResult`` named in the
method's [`~hfgen.registry.MethodInfo`]. It trains and samples the method on a small embedded
default within about a minute on two CPU cores, compares against its baseline in the same run, and
writes its figures (PNG) into ``output_dir``. A demo may also take ``smoke: bool = False``: with
``smoke=True`` (what ``hfgen check`` passes) it runs the same code at the smallest size, in seconds.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class DemoResult:
    """What a demo returns (and ``hfgen demo`` prints and saves as ``result.json``).

    Args:
        method: the method's registry name.
        claim: the paper's claim that the demo checks, in one line.
        metric: what the two numbers measure, with its direction, e.g. ``"accuracy (higher is better)"``.
        baseline_name: the baseline the method is compared with in the same run.
        baseline_value: the baseline's figure.
        method_value: the method's figure.
        higher_is_better: the metric's direction ([`improved`] compares accordingly).
        seconds: wall time, filled in by [`run_demos`].
        figures: paths of the PNG figures the demo wrote.
        details: anything else, JSON-serializable.
    """

    method: str
    claim: str  # the paper's claim that the demo checks, in one line
    metric: str  # what the two numbers measure, e.g. "accuracy (higher is better)"
    baseline_name: str
    baseline_value: float
    method_value: float
    higher_is_better: bool = True
    seconds: float = 0.0
    figures: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def improved(self) -> bool:
        if self.higher_is_better:
            return self.method_value > self.baseline_value
        return self.method_value < self.baseline_value


def run_demos(names: list[str], output_dir: str | Path, seed: int = 0, echo=print) -> list[DemoResult | tuple[str, str]]:
    """Run the demos of ``names`` one after another; a failing demo is reported, not fatal."""
    from hfgen.registry import get_method

    output_dir = Path(output_dir)
    results: list[DemoResult | tuple[str, str]] = []
    for i, name in enumerate(names, 1):
        echo(f"[{i}/{len(names)}] {name}: running demo ...")
        start = time.perf_counter()
        try:
            info = get_method(name)
            demo = info.load_demo()
            method_dir = output_dir / name
            method_dir.mkdir(parents=True, exist_ok=True)
            result = demo(method_dir, seed=seed)
            result.seconds = time.perf_counter() - start
            (method_dir / "result.json").write_text(json.dumps(asdict(result), indent=2, default=str))
            echo(f"[{i}/{len(names)}] {name}: {result.metric}: {result.baseline_name} {result.baseline_value:.4g} "
                 f"-> {name} {result.method_value:.4g} ({result.seconds:.0f}s)")
            results.append(result)
        except Exception as err:
            echo(f"[{i}/{len(names)}] {name}: FAILED: {type(err).__name__}: {err}")
            (output_dir / f"{name}.error.txt").parent.mkdir(parents=True, exist_ok=True)
            (output_dir / f"{name}.error.txt").write_text(traceback.format_exc())
            results.append((name, f"{type(err).__name__}: {err}"))
    return results


def format_table(results: list[DemoResult | tuple[str, str]]) -> str:
    header = ("method", "claim", "metric", "baseline", "method", "seconds")
    rows = []
    for r in results:
        if isinstance(r, DemoResult):
            rows.append((r.method, r.claim, r.metric, f"{r.baseline_name}: {r.baseline_value:.4g}",
                         f"{r.method_value:.4g}", f"{r.seconds:.0f}"))
        else:
            rows.append((r[0], "FAILED", r[1][:60], "", "", ""))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|-" + "-|-".join("-" * w for w in widths) + "-|"
    return "\n".join([line(header), sep, *map(line, rows)])
