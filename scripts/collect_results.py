"""Render every published number from the raw run records, and check that the docs still match them.

Raw records (``hfgen.results.write_record``) live in ``docs/results/raw/<method>/<name>.json``. A docs page shows a
record through a block

    <!-- record <method>/<name> -->
    ... (written by this script: do not edit) ...
    <!-- end record -->

whose body is produced by the renderer registered for ``<method>/<name>`` or ``<method>`` in [`RENDERERS`]
(default: [`render_arms`], a table of mean [95% t-interval] per arm and metric, the paired differences against the
baseline arm and the paper's claim, all through ``hfgen.results``). This script

- re-renders every block in ``docs/results/*.md`` from its record,
- renders the "paper's effect" tail of the status column of README's zoo table from the records' claims (and
  checks that ``hfgen.demos.PAPER_EFFECT``, what ``hfgen demo`` prints, says the same),
- joins the sections into ``docs/results.md``,

and with ``--check`` writes nothing but fails (exit 1, one line per difference) when any of those differ from what is
committed, when a block names a missing record, when a record's figure is missing or changed, or when ``docs/figures``
holds or the docs show a figure that no current record produced.

    python scripts/collect_results.py            # re-render in place
    python scripts/collect_results.py --check    # what the test suite runs

A new script plugs in by calling ``write_record(method, name, seeds=..., metrics={arm: {metric: [per seed]}},
settings={...}, figures=[...])`` and adding ``<!-- record method/name -->`` + ``<!-- end record -->`` to its docs
page; a layout the generic table does not fit gets one function ``@renderer("method") def ...(record, records) -> str``
(or ``@renderer("method/name")`` for one record).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from hfgen.demos import PAPER_EFFECT
from hfgen.methods import builtin_methods
from hfgen.results import equivalent, file_digest, interval, paired, read_record, verdict

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["core", *(info.name for info in builtin_methods())]  # the manifests' zoo order
TITLES = {"iisan": "IISAN and IISAN-Versa", "crossan": "CROSSAN"}
HEADER = """# hfgen results

Every measured number on this page sits in a block rendered by `scripts/collect_results.py` from a raw run
record in `docs/results/raw/<method>/<name>.json` (the exact command, git commit, seeds, torch threads, library
versions, wall time, settings and every per-seed value), named on the line under the block;
`python scripts/collect_results.py --check` (run by the test suite) fails when such a block or a figure no longer
matches its record. Intervals are means with two-sided 95% Student-t intervals over seeds; differences are
paired by seed, and one whose interval contains 0 is written "no difference". Where an experiment has not been
re-run since raw records began, its section says so and gives the command to rerun it. The Fidelity section's
measured tables (agreement with the official code, asserted by `tests/golden/`) are rendered from the records
`scripts/fidelity_agreement.py` writes. "Uncommitted changes" on a provenance line: until commit bdeb42e a record
counted other studies' records and figures in the same study checkout, and (by a parsing slip) a run's own
figure when it replaced a tracked one, as uncommitted changes; records written since count only files that no run
writes.
"""
BLOCK = re.compile(r"(<!-- record (?P<id>[\w.-]+/[\w.-]+) -->\n)(?P<body>.*?)(<!-- end record -->)", re.S)
FIGURE = re.compile(r"!\[[^\]]*\]\((?:\.\./)?(?:docs/)?(figures/[^)\s]+)\)")
EFFECTS = ("shown", "not shown", "not measurable here", "not re-measured")
NOT_REMEASURED = "not re-measured"
Renderer = Callable[[dict, dict[str, dict]], str]  # (the record, every record by "method/name") -> markdown
RENDERERS: dict[str, Renderer] = {}


def renderer(key: str) -> Callable[[Renderer], Renderer]:
    """Register the block renderer of one record (``"method/name"``) or of a method's records (``"method"``); the
    generic [`render_arms`] renders the others."""

    def register(fn: Renderer) -> Renderer:
        RENDERERS[key] = fn
        return fn

    return register


# ------------------------------------------------------------------------------------------------ records


def load_records(root: Path) -> tuple[dict[str, dict], list[str]]:
    """Every record under ``docs/results/raw`` by ``method/name``, and the problems found while reading them."""
    records, problems = {}, []
    for path in sorted((root / "docs" / "results" / "raw").rglob("*.json")):
        where = path.relative_to(root)
        try:
            record = read_record(path)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        key = f"{record['method']}/{record['name']}"
        if path.relative_to(root / "docs" / "results" / "raw").with_suffix("").as_posix() != key:
            problems.append(f"{where}: holds record {key}, expected at docs/results/raw/{key}.json")
        records[key] = record
    return records, problems


def claim_effect(record: dict) -> str | None:
    """"shown" / "not shown" / "not measurable here" for a record whose settings state a claim, else None.

    ``settings["claim"]`` = ``{"arm", "baseline", "metric", "higher_is_better", "margin" (optional: an equivalence
    claim, shown only when the whole paired interval lies inside +-margin), "measurable" (optional, False when this
    setting cannot test the claim)}``.
    """
    claim = record["settings"].get("claim")
    if not claim:
        return None
    if claim.get("measurable") is False:
        return "not measurable here"
    metrics = record["metrics"]
    diff = paired(metrics[claim["arm"]][claim["metric"]], metrics[claim["baseline"]][claim["metric"]])
    if claim.get("margin") is not None:
        return "shown" if equivalent(diff, claim["margin"]) else "not shown"
    return "shown" if verdict(diff, claim.get("higher_is_better", True)) == "better" else "not shown"


def method_effects(records: dict[str, dict]) -> dict[str, str]:
    """The paper's effect per method over its claim records: shown only if every claim is shown."""
    found: dict[str, list[str]] = {}
    for record in records.values():
        effect = claim_effect(record)
        if effect is not None:
            found.setdefault(record["method"], []).append(effect)
    effects = {}
    for method, each in found.items():
        measurable = [e for e in each if e != "not measurable here"]
        effects[method] = ("not measurable here" if not measurable else
                           "shown" if all(e == "shown" for e in measurable) else "not shown")
    return effects


# ---------------------------------------------------------------------------------------------- rendering


def _digits(record: dict, metric: str) -> int:
    digits = record["settings"].get("digits", 3)
    return digits.get(metric, 3) if isinstance(digits, dict) else int(digits)


def provenance(record: dict) -> str:
    """One line naming the record and how it was produced."""
    commit = (record["commit"] or "unknown")[:10] + (" (uncommitted changes)" if record["dirty"] else "")
    wall = "" if record["wall_s"] is None else f", {record['wall_s']:.0f} s wall"
    if record.get("load_average"):  # written since the third session; older records lack it
        wall += f" (machine load average {record['load_average'][1]:g} over the last 5 minutes)"
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items() if k in ("torch", "transformers", "trl",
                                                                                      "diffusers"))
    return (f"Record `docs/results/raw/{record['method']}/{record['name']}.json`: `{record['command']}` at commit "
            f"{commit}, seeds {record['seeds']}, {record['torch_threads']} torch thread(s), {record['device']}"
            f"{wall}; {versions}.")


def _settings_line(record: dict) -> str:
    shown = {k: v for k, v in record["settings"].items()
             if k not in ("claim", "higher_is_better", "digits", "baseline", "budget", "notes")}
    parts = [f"{k}={v}" for k, v in shown.items()]
    budget = record["settings"].get("budget")
    if budget:
        parts.append("tuning budget per arm: " + "; ".join(f"{arm}: {b}" for arm, b in budget.items()))
    return ("Settings: " + ", ".join(parts) + ".") if parts else ""


def _cell(values: list, digits: int) -> str:
    """Mean [95% t-interval] over seeds; a value every seed shares is written once; values too small for the
    table's decimals (learning rates) and values some seed lacks (``None``: e.g. a level never reached) are listed
    per seed."""
    if any(v is None for v in values):
        return "per seed: " + " / ".join("never" if v is None else f"{v:g}" for v in values)
    if all(0 < abs(v) < 10 ** -digits for v in values):
        return "per seed: " + " / ".join(f"{v:g}" for v in values)
    if len(set(values)) == 1 and len(values) > 1:
        value = values[0]
        return f"{value:g} (every seed)" if isinstance(value, int) else f"{value:.{digits}f} (every seed)"
    return interval(values).format(digits)


def _per_seed_numbers(values) -> bool:
    return isinstance(values, list) and all(v is None or isinstance(v, (int, float)) for v in values)


def render_arms(record: dict, records: dict[str, dict] | None = None, pairs: list[tuple[str, str]] | None = None) -> str:
    """The generic block: arms x metrics (mean [95% t-interval] over seeds), paired differences (``pairs`` of
    (arm, baseline), by default every arm against the record's baseline), the claim."""
    metrics = record["metrics"]
    arms = list(metrics)
    columns = list(dict.fromkeys(m for arm in arms for m, v in metrics[arm].items() if _per_seed_numbers(v)))
    lower = record["settings"].get("higher_is_better", {})
    lines = ["| arm | " + " | ".join(f"{m} ({'higher' if lower.get(m, True) else 'lower'} is better)"
                                     if m in lower else m for m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for arm in arms:
        cells = [_cell(metrics[arm][m], _digits(record, m)) if m in metrics[arm] else "" for m in columns]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    out = ["\n".join(lines)]
    baseline = record["settings"].get("baseline")
    compared = columns
    claim = record["settings"].get("claim")
    if not baseline and claim:  # no stated baseline: every arm against the claim's, on the claim's metric
        baseline, compared = claim["baseline"], [claim["metric"]]
    if pairs is None and baseline:
        pairs = [(arm, baseline) for arm in arms if arm != baseline]
    if pairs:
        diffs = []
        for arm, baseline in pairs:
            for m in compared:
                if m in metrics[arm] and m in metrics[baseline] and m in lower:
                    d = paired(metrics[arm][m], metrics[baseline][m])
                    diffs.append(f"- {arm} − {baseline}, {m}: {d.format(_digits(record, m))} → "
                                 f"{verdict(d, lower[m])}")
        if diffs:
            out.append("Paired by seed (95% t-interval of the per-seed differences):\n\n" + "\n".join(diffs))
    return "\n\n".join(out + footer(record)) + "\n"


def claim_sentence(record: dict) -> str:
    """"Paper's claim checked: ... **verdict**." for a record whose settings state a claim."""
    claim = record["settings"]["claim"]
    margin = f", equivalence margin ±{claim['margin']} fixed in advance" if claim.get("margin") is not None else ""
    text = f"{claim['text']} " if claim.get("text") else ""
    return (f"Paper's claim checked: {text}({claim['arm']} vs {claim['baseline']} on "
            f"{claim['metric']}{margin}): **{claim_effect(record)}**.")


def footer(record: dict) -> list[str]:
    """The paragraphs under every table: the claim checked and its verdict, notes, settings, provenance."""
    out = [claim_sentence(record)] if record["settings"].get("claim") else []
    out += record["settings"].get("notes", [])
    settings = _settings_line(record)
    if settings:
        out.append(settings)
    out.append(provenance(record))
    return out


@renderer("mf2/face_au_adaptation")
def render_mf2_adaptation(record: dict, records: dict[str, dict]) -> str:
    """Each adaptation (linear probe, DFN) against full fine-tuning of the same pretrained MF², paired by seed."""
    arms = list(record["metrics"])
    pairs = [(arm, arm.split(" / ")[0] + " / full fine-tuning") for arm in arms if not arm.endswith("full fine-tuning")]
    return render_arms(record, records, pairs=pairs)


@renderer("gft/digits")
def render_gft_digits(record: dict, records: dict[str, dict]) -> str:
    """CFG at scale s against GFT at beta = 1/s, paired by seed at every s, and each sampler's network calls."""
    metrics = record["metrics"]
    calls = ", ".join(f"s = {scale:g}: {metrics[f'CFG s={scale:g}']['nfe_per_image'][0]:g} / "
                      f"{metrics[f'GFT s={scale:g}']['nfe_per_image'][0]:g}" for scale in record["settings"]["scales"])
    return "\n\n".join([_guidance_table(record, [("digits_fid", 2), ("class_accuracy", 3)]),
                        f"Network calls per image, CFG / GFT: {calls}."] + footer(record)) + "\n"


@renderer("demo")
def render_demo(record: dict, records: dict[str, dict]) -> str:
    """The main job's table: one row per method (one seed) as the demo measured it, with the paper's effect as the
    current records of docs/results give it."""
    effects = method_effects(records)
    rows = ["| method | metric | baseline | method | seconds | paper's effect in docs/results |", "|---|---|---|---|---|---|"]
    for method, values in record["metrics"].items():
        info = record["settings"]["methods"][method]
        if "error" in info:
            rows.append(f"| {method} | FAILED: {info['error']} | | | | |")
            continue
        metric = info["metric"].replace("|", "\\|")  # e.g. KL(p || q) inside a table cell
        rows.append(f"| {method} | {metric} | {info['baseline_name']}: {values['baseline'][0]:.4g} | "
                    f"{values['method'][0]:.4g} | {values['seconds'][0]:.0f} | {effects.get(method, NOT_REMEASURED)} |")
    total = record["wall_s"]
    head = (f"{len(record['metrics'])} demos, seed {record['seeds'][0]}, in {total:.0f} s. Each row is one seed "
            "of a small embedded default; the longer experiments in the sections below are the evidence for each "
            "claim.")
    return head + "\n\n" + "\n".join(rows) + "\n\n" + provenance(record) + "\n"


@renderer("masked_diffusion/bench_discrete_samplers")
def render_discrete_samplers(record: dict, records: dict[str, dict]) -> str:
    """The sampler table the benchmark script itself defines (``scripts/bench_discrete_samplers.py::table``)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from bench_discrete_samplers import table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return table(record) + "\n\n" + provenance(record) + "\n"


def _iisan_table(function: str, record: dict) -> str:
    """A table that ``scripts/iisan_common.py`` defines (the IISAN scripts print the same one), with provenance."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import iisan_common
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    claim = [claim_sentence(record)] if record["settings"].get("claim") else []
    return "\n\n".join([getattr(iisan_common, function)(record), *claim, provenance(record)]) + "\n"


@renderer("iisan/amazon")
@renderer("iisan/amazon_full")
def render_iisan_amazon(record: dict, records: dict[str, dict]) -> str:
    """IISAN and the baselines on Amazon Instruments: hierarchical bootstrap intervals (seeds, then users) and the
    paired per-user differences to IISAN, from the per-seed, per-user ranks of the record."""
    return _iisan_table("amazon_table", record)


@renderer("iisan/bench_efficiency")
def render_iisan_bench_efficiency(record: dict, records: dict[str, dict]) -> str:
    """Step time, training memory and trainable parameters per arm: median [min, max] over repeats, and ratios to
    full fine-tuning."""
    return _iisan_table("efficiency_table", record)


FIDELITY_HEAD = "| method | comparison | max abs diff | max rel diff | note |\n|---|---|---|---|---|"


def _largest(values: list) -> str:
    return f"{max(values):.1e}"


def fidelity_row(label: str, comparison: str, metrics: dict, note: str = "", cell: str | None = None) -> str:
    """One row of a fidelity table, from one comparison's raw values (``scripts/fidelity_agreement.py`` prints it,
    [`render_fidelity`] renders it): differing tokens out of all for discrete samplers; the largest absolute and
    relative difference; ``(norm)`` for a difference relative to the reference's norm; for golden-test groups the
    largest relative loss and gradient difference over the cases (the note defaults to their count); ``cell``, a sentence with the largest values
    formatted in (``{metric}``), replaces the difference columns."""
    abs_cell = rel_cell = ""
    if cell is not None:
        abs_cell = cell.format(**{metric: max(values) for metric, values in metrics.items()})
    elif "tokens_differ" in metrics:
        abs_cell = f"{sum(metrics['tokens_differ']):g} of {sum(metrics['tokens']):g} tokens differ"
    elif "loss_rel_diff" in metrics:
        rel_cell = f"loss {_largest(metrics['loss_rel_diff'])}, gradient {_largest(metrics['grad_rel_diff'])}"
        cases = len(metrics["loss_rel_diff"])
        note = note or f"{cases} case{'s' if cases > 1 else ''}"
    else:
        largest = max(metrics["max_abs_diff"])
        abs_cell = _largest(metrics["max_abs_diff"])
        if "max_rel_diff" in metrics:
            rel_cell = _largest(metrics["max_rel_diff"])
        elif "max_rel_norm_diff" in metrics:
            rel_cell = _largest(metrics["max_rel_norm_diff"]) + " (norm)"
        elif largest == 0:
            abs_cell = "0 (bit-identical)"
    return f"| {label} | {comparison} | {abs_cell} | {rel_cell} | {note} |"


@renderer("fidelity")
def render_fidelity(record: dict, records: dict[str, dict]) -> str:
    """A measured table of docs/results/fidelity.md: one row per comparison of the record (``settings``: ``label``,
    the method column; ``row_notes`` and ``cells`` per comparison)."""
    settings = record["settings"]
    rows = [fidelity_row(settings["label"], comparison, values, settings["row_notes"].get(comparison, ""),
                         settings.get("cells", {}).get(comparison)) for comparison, values in record["metrics"].items()]
    return "\n".join([FIDELITY_HEAD, *rows]) + "\n\n" + provenance(record) + "\n"


def _guidance_table(record: dict, columns: list[tuple[str, int]]) -> str:
    """One row per guidance scale s: CFG at s, GFT at β = 1/s and their paired difference (with its verdict), for
    each ``(metric, digits)`` of ``columns``."""
    metrics, better = record["metrics"], record["settings"]["higher_is_better"]
    head = ["s (GFT: β = 1/s)"]
    for metric, _ in columns:
        head += [f"CFG {metric}", f"GFT {metric}", f"GFT − CFG {metric} (paired)"]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for scale in record["settings"]["scales"]:
        cfg, gft = metrics[f"CFG s={scale:g}"], metrics[f"GFT s={scale:g}"]
        cells = [f"{scale:g}"]
        for metric, digits in columns:
            diff = paired(gft[metric], cfg[metric])
            cells += [interval(cfg[metric]).format(digits), interval(gft[metric]).format(digits),
                      f"{diff.format(digits)} → {verdict(diff, better[metric])}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _guidance_cost(record: dict, nfe: str) -> str:
    """Network calls per sample and sampler seconds per 1000 samples, CFG against GFT at every scale."""
    metrics = record["metrics"]
    rows = [f"| s | CFG {nfe} | GFT {nfe} | CFG seconds per 1000 samples | GFT seconds per 1000 samples | "
            "GFT − CFG seconds (paired) |", "|---|---|---|---|---|---|"]
    for scale in record["settings"]["scales"]:
        cfg, gft = metrics[f"CFG s={scale:g}"], metrics[f"GFT s={scale:g}"]
        diff = paired(gft["sampling_seconds_per_1k"], cfg["sampling_seconds_per_1k"])
        rows.append(f"| {scale:g} | {cfg[nfe][0]:g} | {gft[nfe][0]:g} | "
                    f"{interval(cfg['sampling_seconds_per_1k']).format(2)} | "
                    f"{interval(gft['sampling_seconds_per_1k']).format(2)} | {diff.format(2)} → "
                    f"{verdict(diff, higher_is_better=False)} |")
    return "\n".join(rows)


def _chosen_line(record: dict, metric: str, digits: int) -> str:
    """The two arms at the scale each chose on validation data, paired by seed."""
    metrics = record["metrics"]
    cfg, gft = metrics["CFG chosen"][metric], metrics["GFT chosen"][metric]
    diff = paired(gft, cfg)
    return (f"At the scale each arm chose on validation data: CFG {interval(cfg).format(digits)}, GFT "
            f"{interval(gft).format(digits)}; GFT − CFG {diff.format(digits)} → "
            f"{verdict(diff, record['settings']['higher_is_better'][metric])} ({metric}).")


@renderer("gft/toy2d")
def render_gft_toy2d(record: dict, records: dict[str, dict]) -> str:
    """Exact 2-D quality per guidance scale (CFG at s vs GFT at β = 1/s, paired by seed), the cost, the data floor."""
    data = record["metrics"]["data"]
    floor = ", ".join(f"{m} {interval(data[m]).format(3)}" for m in ("sliced_w2", "support_distance", "precision",
                                                                        "coverage"))
    train = record["settings"]["train_seconds"]
    parts = [_guidance_table(record, [("sliced_w2", 3), ("support_distance", 3)]),
             _guidance_table(record, [("precision", 3), ("coverage", 3)]),
             f"Independent true draws (the finite-sample floor of each metric): {floor}.",
             _chosen_line(record, "sliced_w2", 3),
             "Cost of sampling (the same DDIM steps and batch; CFG batches its conditional and null rows):\n\n"
             + _guidance_cost(record, "nfe_per_sample"),
             f"Training seconds (same steps): CFG {interval(train['CFG']).format(1)}, GFT "
             f"{interval(train['GFT']).format(1)} (GFT adds a no-gradient null-branch forward per step)."]
    return "\n\n".join(parts + footer(record)) + "\n"


@renderer("gft/finetune_digits")
def render_gft_finetune_digits(record: dict, records: dict[str, dict]) -> str:
    """Digits FID and class accuracy per guidance scale after equal-budget continuation (CFG) or GFT fine-tuning."""
    seconds = record["settings"]["seconds"]
    parts = [_guidance_table(record, [("digits_fid", 2), ("class_accuracy", 3)]),
             _guidance_table(record, [("diversity", 2)]),
             _chosen_line(record, "digits_fid", 2),
             "Cost of sampling (the same DDIM steps and batch; CFG batches its conditional and null rows):\n\n"
             + _guidance_cost(record, "nfe_per_image"),
             f"Training seconds: pretraining {interval(seconds['pretrain']).format(1)}; the chosen run's fine-tuning "
             f"CFG {interval(seconds['CFG']).format(1)}, GFT {interval(seconds['GFT']).format(1)}."]
    return "\n\n".join(parts + footer(record)) + "\n"


def _crossan_table(head: str, conditions: list[str], rows: list[tuple[str, list[str]]]) -> str:
    lines = [f"| {head} | " + " | ".join(f"{c} encoders" for c in conditions) + " |",
             "|---|" + "---|" * len(conditions)]
    return "\n".join(lines + [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows])


@renderer("crossan/synthetic")
def render_crossan_synthetic(record: dict, records: dict[str, dict]) -> str:
    """Arms x number of encoders (``scripts/crossan_synthetic.py``): test HR@10 / NDCG@10, cost, CROSSAN (MoMEF)
    paired against every other arm, and what adding encoders (or the noise encoder) changes, paired by seed."""
    settings, metrics = record["settings"], record["metrics"]
    conditions, arms, reference = list(settings["conditions"]), settings["arms"], settings["reference"]

    def values(arm, condition, metric):
        return metrics.get(f"{arm} | {condition} encoders", {}).get(metric)

    def diff_cell(a, b, metric):
        if not a or not b:
            return ""
        d = paired(a, b)
        return f"{d.format(3)} → {verdict(d)}"

    out = []
    for metric in ("hr@10", "ndcg@10"):
        rows = [(arm, [interval(values(arm, c, metric)).format(3) if values(arm, c, metric) else "" for c in conditions])
                for arm in [*arms, reference]]
        out.append(f"Test {metric.upper()} (mean [95% t-interval over seeds]):\n\n"
                   + _crossan_table("arm", conditions, rows))
    cost = []
    for arm in arms:
        cells = []
        for c in conditions:
            if not values(arm, c, "step_ms"):
                cells.append("")
                continue
            lrs = " / ".join(f"{v:g}" for v in values(arm, c, "chosen_lr"))
            cells.append(f"{values(arm, c, 'trainable_params')[0]:,} · {interval(values(arm, c, 'step_ms')).format(0)} "
                         f"ms · lr {lrs}")
        cost.append((arm, cells))
    out.append("Trainable parameters of the item encoder · milliseconds per training step (median step of the arm's "
               "runs, mean [95% t-interval] over seeds) · learning rate chosen on validation, per seed:\n\n"
               + _crossan_table("arm", conditions, cost))
    if "CROSSAN (MoMEF)" in arms:
        for metric in ("hr@10", "ndcg@10"):
            rows = [(f"CROSSAN (MoMEF) − {arm}", [diff_cell(values("CROSSAN (MoMEF)", c, metric), values(arm, c, metric),
                                                            metric) for c in conditions])
                    for arm in arms if arm != "CROSSAN (MoMEF)"]
            out.append(f"Paired by seed, test {metric.upper()} (95% t-interval of the per-seed differences):\n\n"
                       + _crossan_table("difference", conditions, rows))
    steps = [(f"{later} − {earlier} encoders", later, earlier) for later, earlier in
             (("3", "2"), ("4", "3"), ("4", "2"), ("4+noise", "4")) if later in conditions and earlier in conditions]
    if steps:
        lines = ["| arm | " + " | ".join(name for name, _, _ in steps) + " |", "|---|" + "---|" * len(steps)]
        for arm in [*arms, reference]:
            lines.append(f"| {arm} | " + " | ".join(diff_cell(values(arm, later, "hr@10"), values(arm, earlier, "hr@10"),
                                                              "hr@10") for _, later, earlier in steps) + " |")
        out.append("Adding encoders, test HR@10 paired by seed (the last column adds the pure-noise encoder):\n\n"
                   + "\n".join(lines))
    router = {k: v for k, v in metrics.get("CROSSAN (MoMEF) | 4+noise encoders", {}).items() if k.startswith("router_")}
    if router:
        out.append("MoMEF router weight per expert with the noise encoder (mean over items at the selected epoch; "
                   f"uniform would be {1 / len(router):.3f}): "
                   + ", ".join(f"{k.removeprefix('router_')} {interval(v).format(3)}" for k, v in router.items()) + ".")
    return "\n\n".join(out + footer(record)) + "\n"


@renderer("ddo/gmm_rounds")
def render_ddo_rounds(record: dict, records: dict[str, dict]) -> str:
    """DDO self-play against continued MLE round by round: the reference's plateau, then one table per metric (mean
    [95% t-interval] over seeds, the paired difference DDO − MLE and its verdict at every round) and the learning
    rates each arm chose on validation."""
    metrics, settings = record["metrics"], record["settings"]
    better, reference, half = settings["higher_is_better"], settings["reference"], settings["half_reference"]
    rounds = range(1, settings["rounds"] + 1)
    lines = []
    for m in better:
        d = paired(metrics[reference][m], metrics[half][m])
        lines.append(f"- {reference} − {half}, {m}: {d.format(_digits(record, m))} → {verdict(d, better[m])}")
    out = [f"Plateau of the reference ({settings['pretrain_steps']} cosine-decayed MLE steps against a copy given "
           f"{settings['pretrain_steps'] // 2}, same initialisation and batches; paired by seed):\n\n" + "\n".join(lines)]
    for m in better:
        digits = _digits(record, m)
        rows = [f"**{m}** ({'higher' if better[m] else 'lower'} is better)\n",
                "| round | optimizer steps | DDO | continued MLE | DDO − MLE (paired by seed) |", "|---|---|---|---|---|",
                f"| 0 (reference) | 0 | {interval(metrics[reference][m]).format(digits)} | same | |"]
        for r in rounds:
            ddo, mle = metrics[f"DDO round {r}"], metrics[f"MLE round {r}"]
            d = paired(ddo[m], mle[m])
            rows.append(f"| {r} | {_cell(ddo['optimizer_steps'], digits)} | {interval(ddo[m]).format(digits)} | "
                        f"{interval(mle[m]).format(digits)} | {d.format(digits)} → {verdict(d, better[m])} |")
        out.append("\n".join(rows))
    lr_rows = ["| round | DDO lr per seed | MLE lr per seed |", "|---|---|---|"]
    for r in rounds:
        lr_rows.append(f"| {r} | " + " | ".join(" / ".join(f"{v:g}" for v in metrics[f"{arm} round {r}"]["chosen_lr"])
                                                for arm in ("DDO", "MLE")) + " |")
    out.append("Learning rate chosen at each round on validation:\n\n" + "\n".join(lr_rows))
    return "\n\n".join(out + footer(record)) + "\n"


@renderer("nft/negatives")
def render_nft_negatives(record: dict, records: dict[str, dict]) -> str:
    """Each arm at its validation-chosen lr: accuracy, pass@k, entropy; NFT paired against every other arm; the
    warm start; the lr selection on validation."""
    metrics, settings = record["metrics"], record["settings"]
    arms = list(metrics)
    fmt = lambda values, digits=3: interval(values).format(digits)  # noqa: E731  (mean [95% t-interval])
    rows = ["| arm | lr (chosen on validation) | final test accuracy | test accuracy at best validation | pass@1 | "
            "pass@16 | entropy, warm start → end | answers generated |", "|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        m = metrics[arm]
        entropy = f"{fmt([c[0] for c in m['curve_entropy']])} → {fmt([c[-1] for c in m['curve_entropy']])}"
        rows.append(f"| {arm} | {m['learning_rate'][0]:g} | {fmt(m['final_accuracy'])} | {fmt(m['best_accuracy'])} | "
                    f"{fmt(m['pass_at_1'])} | {fmt(m['pass_at_16'])} | {entropy} | "
                    f"{fmt(m['generated_answers'], 0)} |")
    ks = [k for k in (1, 2, 4, 8, 16) if k <= len(metrics[arms[0]]["pass_at_k"][0])]
    pass_rows = ["| arm | " + " | ".join(f"pass@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for arm in arms:
        per_seed = metrics[arm]["pass_at_k"]
        pass_rows.append(f"| {arm} | " + " | ".join(fmt([p[k - 1] for p in per_seed]) for k in ks) + " |")
    first = metrics[arms[0]]
    warm = (f"Warm start (one per seed, shared by every arm): {fmt(first['warm_start_sft_steps'], 0)} SFT steps; on "
            f"the test problems greedy accuracy {fmt(first['warm_start_accuracy'])}, sampled accuracy (16 answers at "
            f"temperature 1) {fmt(first['warm_start_sampled_accuracy'])}, fraction of mixed groups of 16 "
            f"{fmt(first['warm_start_frac_mixed'])}.")
    lrs = settings["learning_rates"]
    selection = ["| arm | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for arm in arms:
        cells = [fmt(metrics[arm][f"grid_validation_accuracy_lr={lr:g}"]) for lr in lrs]
        selection.append(f"| {arm} | " + " | ".join(f"**{cell}**" if lr == metrics[arm]["learning_rate"][0] else cell
                                                    for lr, cell in zip(lrs, cells)) + " |")
    diffs = []
    for other in (a for a in arms if a != "nft"):
        for key, label in (("final_accuracy", "final test accuracy"), ("best_accuracy", "test accuracy at best "
                           "validation"), ("pass_at_1", "pass@1"), ("pass_at_16", "pass@16")):
            d = paired(metrics["nft"][key], metrics[other][key])
            diffs.append(f"- nft − {other}, {label}: {d.format(3)} → {verdict(d)}")
        d = paired([c[-1] for c in metrics["nft"]["curve_entropy"]], [c[-1] for c in metrics[other]["curve_entropy"]])
        trend = verdict(d).replace("better", "higher").replace("worse", "lower")
        diffs.append(f"- nft − {other}, entropy at the end: {d.format(3)} → {trend}")
    return "\n\n".join([
        "\n".join(rows), warm, "pass@k on the test problems (unbiased estimator from 16 answers per problem):",
        "\n".join(pass_rows), "Paired by seed (95% t-interval of the per-seed differences):\n\n" + "\n".join(diffs),
        "Learning-rate selection: final greedy accuracy on the validation split, mean [95% t-interval] over seeds "
        "(bold: chosen, the best mean):",
        "\n".join(selection), *footer(record)]) + "\n"


def render_blocks(text: str, records: dict[str, dict], where: str, problems: list[str]) -> str:
    def one(match: re.Match) -> str:
        key = match["id"]
        if key not in records:
            problems.append(f"{where}: block names record {key}, which does not exist")
            return match.group(0)
        record = records[key]
        render = RENDERERS.get(key) or RENDERERS.get(record["method"], render_arms)
        return match.group(1) + render(record, records) + match.group(4)

    return BLOCK.sub(one, text)


def effects_table(records: dict[str, dict], names: list[str]) -> str:
    """The opening table: per method, each claim a record checks, its verdict, the record and its seeds; a method
    with no claim record is "not re-measured"."""
    rows = ["## The papers' effects here", "",
            "| method | paper's effect (as checked) | shown here? | evidence | seeds |", "|---|---|---|---|---|"]
    for name in names:
        if name not in ORDER[1:]:  # the methods, not the core or fidelity pages
            continue
        claims = [r for r in records.values() if r["method"] == name and r["settings"].get("claim")]
        if not claims:
            rows.append(f"| {name} | | {NOT_REMEASURED} | [results/{name}.md](results/{name}.md) | |")
        for record in claims:
            claim = record["settings"]["claim"]
            margin = f", margin ±{claim['margin']}" if claim.get("margin") is not None else ""
            what = (f"{claim.get('text') or ''} ({claim['arm']} vs {claim['baseline']}, {claim['metric']}{margin})"
                    .strip().replace("|", "\\|"))  # arm names may hold a "|": escaped, it stays in its cell
            effect = claim_effect(record)
            if claim.get("reason") and effect == "not measurable here":
                effect += f": {claim['reason']}"
            rows.append(f"| {name} | {what} | {effect} | "
                        f"[results/{name}.md](results/{name}.md), `raw/{name}/{record['name']}.json` | "
                        f"{len(record['seeds'])} |")
    return "\n".join(rows) + "\n"


def render_readme_status(text: str, effects: dict[str, str], problems: list[str]) -> str:
    """The zoo table's status cells end in ``paper's effect here: <effect> ([results](docs/results/<m>.md))``;
    the hand-written part before it may not hold a number (numbers come from records, in docs/results)."""
    out = []
    for line in text.splitlines(keepends=True):
        match = re.match(r"\| `(\w+)` \|(.*)\| ([^|]*) \|\s*$", line)
        if match and match[1] in ORDER:
            method, status = match[1], match[3]
            prefix = status.split("; paper's effect here:")[0]
            if re.search(r"\d", re.sub(r"\[[^\]]*\]\([^)]*\)", "", prefix)):
                problems.append(f"README.md: the status of `{method}` holds a number outside the rendered part: "
                                f"{prefix!r}")
            effect = effects.get(method, NOT_REMEASURED)
            status = f"{prefix}; paper's effect here: {effect} ([results](docs/results/{method}.md))"
            line = f"| `{method}` |{match[2]}| {status} |\n"
        out.append(line)
    return "".join(out)


def section(name: str, text: str) -> str:
    text = text.strip().replace("](../figures/", "](figures/")
    text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)  # nest the section's headings under this page
    if not text.startswith("## "):
        text = f"## {TITLES.get(name, name)}\n\n{text}"
    return text + "\n"


def render_all(root: Path) -> tuple[dict[Path, str], list[str]]:
    """Every file this script owns, rendered from the records (path -> text), and the problems found."""
    records, problems = load_records(root)
    docs = root / "docs"
    pages = {p: render_blocks(p.read_text(), records, str(p.relative_to(root)), problems)
             for p in sorted((docs / "results").glob("*.md"))}
    by_name = {p.stem: text for p, text in pages.items()}
    names = [n for n in ORDER if n in by_name] + sorted(set(by_name) - set(ORDER))
    rendered = dict(pages)
    rendered[docs / "results.md"] = "\n".join([HEADER, effects_table(records, names)] +
                                              [section(n, by_name[n]) for n in names])
    effects = method_effects(records)
    readme = root / "README.md"
    if readme.exists():
        rendered[readme] = render_readme_status(readme.read_text(), effects, problems)
    for method, printed in PAPER_EFFECT.items():  # what `hfgen demo` prints as the paper's effect
        if method in by_name and printed != effects.get(method, NOT_REMEASURED):
            problems.append(f"hfgen/demos/__init__.py: PAPER_EFFECT[{method!r}] is {printed!r}, the records say "
                            f"{effects.get(method, NOT_REMEASURED)!r}")
    problems += check_figures(root, records, rendered)
    return rendered, problems


def check_figures(root: Path, records: dict[str, dict], rendered: dict[Path, str]) -> list[str]:
    """A figure may be shown or kept in docs/figures only while a record produced it, unchanged."""
    problems, produced = [], {}
    for key, record in records.items():
        for path, digest in record.get("figures", {}).items():
            produced[path] = key
            if not (root / path).exists():
                problems.append(f"record {key}: its figure {path} is missing")
            elif file_digest(root / path) != digest:
                problems.append(f"record {key}: its figure {path} changed since the run (sha256 differs)")
    for path in sorted((root / "docs" / "figures").glob("*")):
        rel = path.relative_to(root).as_posix()
        if rel not in produced:
            problems.append(f"{rel}: no current record produced this figure (delete it or rerun its script)")
    for page, text in rendered.items():
        for shown in FIGURE.findall(text):
            if f"docs/{shown}" not in produced:
                problems.append(f"{page.relative_to(root)}: shows {shown}, which no current record produced")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail on any difference")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    rendered, problems = render_all(root)
    stale = [p for p, text in rendered.items() if not p.exists() or p.read_text() != text]
    if args.check:
        problems += [f"{p.relative_to(root)}: differs from what its records render "
                     "(run python scripts/collect_results.py)" for p in stale]
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"collect_results --check: {'FAILED, ' + str(len(problems)) + ' problem(s)' if problems else 'ok'}")
        return 1 if problems else 0
    for path in stale:
        path.write_text(rendered[path])
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"re-rendered {len(stale)} file(s); {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
