"""The ``hfgen`` command: ``list``, ``info NAME``, ``check NAME``, ``demo NAME|--all``, ``push FOLDER --repo-id ID``,
``convert KIND SOURCE OUTPUT``.

A user mistake (an unknown method, a missing folder) is one clear line on stderr and exit code 2;
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


class UserError(Exception):
    """A mistake in what the user asked for; printed as one line."""


def _cmd_list(args) -> int:
    from hfgen.registry import list_methods, registry_problems

    methods = list_methods(include_broken=True)
    for problem in registry_problems():
        print(f"hfgen list: warning: {problem}", file=sys.stderr)
    if not methods:
        print("No hfgen methods are installed.")
        return 0
    width = max(len(m.name) for m in methods)
    for m in methods:
        if m.broken:
            origin = f" (from {m.distribution})" if m.distribution else ""
            print(f"{m.name:<{width}}  BROKEN{origin}: {m.error}")
        else:
            print(f"{m.name:<{width}}  {m.summary}  [arXiv {m.paper.arxiv_id}]")
    return 0


def _get(name: str):
    from hfgen.registry import get_method

    try:
        return get_method(name)
    except (KeyError, ImportError) as err:
        raise UserError(err.args[0] if err.args else str(err)) from None


def _cmd_info(args) -> int:
    info = _get(args.name)
    print(f"{info.name}: {info.summary}")
    if info.description:
        print(info.description)
    print(f"paper:      {info.paper.title} ({info.paper.url})")
    if info.paper.code_url:
        print(f"code:       {info.paper.code_url}")
    print(f"status:     {info.status}")
    print(f"tags:       {', '.join(info.hub_tags)}")
    if info.pipeline_tag:
        print(f"pipeline:   {info.pipeline_tag}")
    print(f"card:       {info.card_template or 'hfgen.model_cards:_base.md'}")
    print(f"demo:       {info.demo or '(none)'}")
    print("components:")
    for cls_name, target in sorted(info.components.items()):
        print(f"  {cls_name:<32} {target}")
    from hfgen.hub import render_model_card

    print("\ncard template, rendered as a saved artifact's README.md (placeholders where a save fills in values):\n")
    print(str(render_model_card(info.name, model_name=f"my-{info.name}-model")))
    return 0


def _cmd_demo(args) -> int:
    from hfgen.demos import DemoResult, format_table, run_demos, write_demo_record
    from hfgen.registry import list_methods

    if args.all == bool(args.names):
        raise UserError("give either method names or --all (see `hfgen demo --help`).")
    if args.all:
        names = [m.name for m in list_methods() if m.demo]
        if not names:
            print("No installed hfgen method has a demo yet.")
            return 0
    else:
        names = [_get(n).name for n in args.names]
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)  # an unwritable folder fails now, not after the demos
    start, started = time.perf_counter(), time.time()
    results = run_demos(names, args.output_dir, seed=args.seed, echo=lambda s: print(s, flush=True),
                        verbose=args.verbose)
    table = format_table(results)
    footer = f"{len(names)} demo(s), seed {args.seed}, in {time.perf_counter() - start:.0f}s"
    print(f"\n{table}\n\n{footer}; figures, results and logs in {Path(args.output_dir).resolve()}")
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    Path(args.output_dir, "summary.md").write_text(f"`hfgen demo {'--all' if args.all else ' '.join(names)} --seed {args.seed}`\n\n{table}\n\n{footer}.\n")
    if args.record is not None:
        print(f"raw record: {write_demo_record(results, args.seed, started, raw_dir=args.record or None)}")
    return 0 if all(isinstance(r, DemoResult) for r in results) else 1


def _cmd_check(args) -> int:
    """``hfgen check NAME``: the manifest checks of ``hfgen.testing.conformance``, then the demo at smoke size."""
    import tempfile

    from hfgen.testing.conformance import check_demo, manifest_checks

    _get(args.name)
    failed = 0
    for what, problem in manifest_checks(args.name):
        failed += problem is not None
        print(f"{'FAIL' if problem else 'ok  '}  {what}{': ' + problem if problem else ''}", flush=True)
    if args.no_demo or _get(args.name).demo is None:
        print("-     demo: not run" + ("" if args.no_demo else " (the method has none)"))
    else:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                r = check_demo(args.name, tmp, smoke=True)
                print(f"ok    demo at smoke size: {r.metric}: {r.baseline_name} {r.baseline_value:.4g} -> "
                      f"{r.method_value:.4g} ({time.perf_counter() - start:.0f}s)")
            except Exception as err:
                failed += 1
                print(f"FAIL  demo at smoke size: {type(err).__name__}: {err}")
    print(f"{args.name}: {'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


def _cmd_push(args) -> int:
    from hfgen.hub import UnsafeWeightsError, push

    if not Path(args.folder).is_dir():
        raise UserError(f"FOLDER {args.folder!r} is not a directory.")
    try:
        url = push(args.folder, args.repo_id, private=args.private or None, commit_message=args.commit_message)
    except (ValueError, UnsafeWeightsError) as err:
        raise UserError(str(err)) from None
    except Exception as err:  # network and server errors: one line, not a traceback
        raise UserError(f"push to {args.repo_id!r} failed: {type(err).__name__}: {err}") from None
    print(url)
    return 0


def _cmd_convert(args) -> int:
    import ast
    import inspect

    from hfgen.convert import ConversionError, get_converter

    fn, fixed = get_converter(args.kind)
    accepted = set(inspect.signature(fn).parameters) - {"source", "output", *fixed}
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in accepted:
            raise UserError(f"--option {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(accepted))}.")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    if "torch_dtype" in options:
        import torch

        dtype = getattr(torch, str(options["torch_dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise UserError(f"--option torch_dtype={options['torch_dtype']}: not a torch dtype (e.g. float32, bfloat16).")
        options["torch_dtype"] = dtype
    if Path(args.output).exists() and not args.overwrite:
        raise UserError(f"OUTPUT {args.output!r} exists; pass --overwrite to replace its weights.")
    try:
        fn(args.source, args.output, **fixed, **options)
    except ConversionError as err:
        raise UserError(str(err)) from None
    print(Path(args.output).resolve())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfgen", description="hfgen: a model zoo of recent generative methods on Hugging Face.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list installed methods (built-in and plugins; broken plugins are marked)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show a method's paper, components and card template")
    p.add_argument("name", help="method name, e.g. nft")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="train and sample methods on small embedded defaults and print a summary table")
    p.add_argument("names", nargs="*", metavar="NAME", help="methods to run")
    p.add_argument("--all", action="store_true", help="run every installed method's demo")
    p.add_argument("--output-dir", default="demo_outputs", help="where figures and results go (default: demo_outputs)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--verbose", action="store_true",
                   help="show the demos' own progress bars and training logs (default: in <output-dir>/<method>/log.txt)")
    p.add_argument("--record", nargs="?", const="", default=None, metavar="RAW_DIR",
                   help="also write the run's raw record to RAW_DIR/demo/all.json (default: docs/results/raw of this "
                        "checkout), from which docs/results.md renders the demo table")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("check", help="validate a method: its components import, its card renders, its demo runs "
                                     "at smoke size")
    p.add_argument("name", help="method name, e.g. a plugin's")
    p.add_argument("--no-demo", action="store_true", help="skip running the demo")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("push", help="upload a saved artifact folder to the Hub")
    p.add_argument("folder", help="a folder written by save_pretrained")
    p.add_argument("--repo-id", required=True, help="target repository, 'namespace/name'")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--commit-message", default="Upload with hfgen", help="commit message")
    p.set_defaults(func=_cmd_push)

    from hfgen.convert import CONVERTERS

    kinds = "\n".join(f"  {kind:<14} {description}" for kind, (_, _, description) in sorted(CONVERTERS.items()))
    p = sub.add_parser("convert", help="convert a checkpoint released with a paper into an hfgen / transformers / Diffusers folder",
                       description=f"Converters:\n{kinds}\n\nSources are read as safetensors or with "
                       "torch.load(weights_only=True) only; every source tensor must be mapped.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=sorted(CONVERTERS), metavar="KIND", help=f"one of: {', '.join(sorted(CONVERTERS))}")
    p.add_argument("source", help="the released checkpoint: a .safetensors / torch file, or a folder holding one")
    p.add_argument("output", help="the folder to write (safetensors weights, config, README.md)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a converter option, e.g. use_ema=False, time_conditioning=True, torch_dtype=bfloat16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT folder's weights")
    p.set_defaults(func=_cmd_convert)

    _add_method_commands(sub)
    return parser


def _add_method_commands(sub) -> None:
    """Methods (built in or plugins) may add their own subcommands through ``MethodInfo.cli``."""
    from hfgen.registry import _import_object, list_methods

    for info in list_methods():
        if info.cli:
            try:
                _import_object(info.cli)(sub)
            except (Exception, SystemExit) as err:  # a broken plugin command must not break the others
                print(f"hfgen: warning: the command of method {info.name!r} failed to load: {err}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, OSError) as err:  # bad input (a missing path, an unwritable folder): one line
        print(f"hfgen {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
