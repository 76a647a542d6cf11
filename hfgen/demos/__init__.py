"""The main job: run each method's registered demo and print a summary table.

A demo is a function ``run(output_dir: pathlib.Path, seed: int = 0) -> DemoResult`` named in the
method's [`~hfgen.registry.MethodInfo`]. It trains and samples the method on a small embedded
default within about a minute on two CPU cores, compares against its baseline in the same run, and
writes its figures (PNG) into ``output_dir``. A demo may also take ``smoke: bool = False``: with
``smoke=True`` (what ``hfgen check`` passes) it runs the same code at the smallest size, in seconds.

A demo row is one seed of a small setting: it shows what that run measured, never whether the paper's
effect holds. That is stated per method by [`PAPER_EFFECT`], the verdict of the longer experiment in
``docs/results/<method>.md`` (``scripts/collect_results.py --check`` fails when the two disagree).
Without ``verbose`` the demos' own output (trainers' progress bars and log dictionaries, warnings) goes to
``<output_dir>/<method>/log.txt`` and the terminal shows one progress line per method.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The paper's effect in the longer experiment of docs/results/<method>.md, as rendered from its raw records:
# "shown", "not shown", "not measurable here" (this setting cannot test it) or "not re-measured" (no raw record
# since records began). Kept equal to the records by `python scripts/collect_results.py --check`.
PAPER_EFFECT = {
    "nft": "not shown",
    "masked_diffusion": "not re-measured",
    "gft": "not shown",
    "ddo": "not shown",
    "consistency_bridge": "not shown",
    "analytic_precond": "not shown",
    "iisan": "shown",
    "crossan": "shown",
    "mf2": "shown",
    "popcorn": "not measurable here",
}

_VERBOSE = False


def verbose() -> bool:
    """Whether demos show their trainers' progress bars and logs (``hfgen demo --verbose``)."""
    return _VERBOSE


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
    claim: str  # the paper's claim that the demo's comparison is about, in one line
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

    @property
    def paper_effect(self) -> str:
        """The verdict of the longer experiment in ``docs/results/<method>.md`` (not of this one-seed run)."""
        effect = PAPER_EFFECT.get(self.method)
        return f"{effect} (docs/results/{self.method}.md)" if effect else "no experiment in docs/results"


@contextlib.contextmanager
def _quiet(log_path: Path):
    """Library progress bars off, library logs at error level, and everything the demo still prints (log
    dictionaries of ``PrinterCallback``, warnings) into ``log_path``."""
    import datasets
    import diffusers
    import transformers

    libraries = (transformers.utils.logging, diffusers.utils.logging)
    levels = [lib.get_verbosity() for lib in libraries]
    for lib in libraries:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    bars = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        for lib, level in zip(libraries, levels):
            lib.set_verbosity(level)
            lib.enable_progress_bar()
        if bars:
            datasets.utils.logging.enable_progress_bar()


class _Spinner:
    """``[k/n] name ⠋ 12s`` rewritten in place on a terminal (nothing extra when the output is not a terminal)."""

    def __init__(self, label: str, stream):
        self.label, self.stream, self.start = label, stream, time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True) if stream.isatty() else None

    def _spin(self):
        frames = "|/-\\"
        i = 0
        while not self._stop.wait(0.5):
            self.stream.write(f"\r{self.label} {frames[i % 4]} {time.perf_counter() - self.start:.0f}s")
            self.stream.flush()
            i += 1

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_demos(names: list[str], output_dir: str | Path, seed: int = 0, echo=print,
              verbose: bool = False) -> list[DemoResult | tuple[str, str]]:
    """Run the demos of ``names`` one after another; a failing demo is reported, not fatal.

    Prints at most two lines per method (its start, then its measurement or failure); with ``verbose`` the
    demos' own progress bars and logs are shown too, else they go to ``<output_dir>/<method>/log.txt``.
    """
    global _VERBOSE
    from hfgen.registry import get_method

    output_dir = Path(output_dir)
    terminal = sys.stdout
    results: list[DemoResult | tuple[str, str]] = []
    for i, name in enumerate(names, 1):
        label = f"[{i}/{len(names)}] {name}"
        echo(f"{label}: running demo ...")
        method_dir = output_dir / name
        method_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        _VERBOSE = verbose
        try:
            demo = get_method(name).load_demo()
            quiet = contextlib.nullcontext() if verbose else _quiet(method_dir / "log.txt")
            with _Spinner(label, terminal) if not verbose else contextlib.nullcontext(), quiet:
                result = demo(method_dir, seed=seed)
            result.seconds = time.perf_counter() - start
            (method_dir / "result.json").write_text(json.dumps(asdict(result), indent=2, default=str))
            echo(f"{label}: {result.metric}: {result.baseline_name} {result.baseline_value:.4g} -> {name} "
                 f"{result.method_value:.4g} ({result.seconds:.0f}s); paper's effect: {result.paper_effect}")
            results.append(result)
        except Exception as err:
            echo(f"{label}: FAILED: {type(err).__name__}: {err} (traceback in {output_dir / (name + '.error.txt')})")
            (output_dir / f"{name}.error.txt").write_text(traceback.format_exc())
            results.append((name, f"{type(err).__name__}: {err}"))
        finally:
            _VERBOSE = False
    return results


def format_table(results: list[DemoResult | tuple[str, str]]) -> str:
    header = ("method", "metric (this run, one seed)", "baseline", "method", "seconds", "paper's effect in docs/results")
    rows = []
    for r in results:
        if isinstance(r, DemoResult):
            rows.append((r.method, r.metric, f"{r.baseline_name}: {r.baseline_value:.4g}", f"{r.method_value:.4g}",
                         f"{r.seconds:.0f}", r.paper_effect))
        else:
            rows.append((r[0], "FAILED", r[1][:60], "", "", ""))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|-" + "-|-".join("-" * w for w in widths) + "-|"
    return "\n".join([line(header), sep, *map(line, rows)])


def write_demo_record(results: list[DemoResult | tuple[str, str]], seed: int, started: float,
                      raw_dir: str | Path | None = None) -> Path:
    """The main job's raw record ``<raw_dir>/demo/all.json``: per method its two numbers and seconds (one seed),
    what they measure, and the paper's effect it printed (``docs/results.md`` renders its table from this)."""
    from hfgen.results import write_record

    metrics, methods = {}, {}
    for r in results:
        if isinstance(r, DemoResult):
            metrics[r.method] = {"baseline": [r.baseline_value], "method": [r.method_value], "seconds": [r.seconds]}
            methods[r.method] = {"metric": r.metric, "baseline_name": r.baseline_name, "claim": r.claim,
                                 "higher_is_better": r.higher_is_better, "effect": r.paper_effect}
        else:
            metrics[r[0]] = {}
            methods[r[0]] = {"error": r[1][:120]}
    return write_record("demo", "all", seeds=[seed], metrics=metrics, settings={"methods": methods},
                        started=started, raw_dir=raw_dir)
