"""What every recording script in ``scripts/golden/`` shares: its arguments, stand-in modules, and the writer.

A recording script imports the official implementation from a checkout of its repository (``--checkout``, a
public snapshot that is never copied into hfgen), runs it on fixed seeded inputs and writes
``tests/golden/data/<upstream>/<name>.safetensors`` with ``<name>.provenance.json`` (the fields of
``tests.golden.recorded.PROVENANCE_FIELDS``).
"""

import argparse
import datetime
import json
import platform
import shlex
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.golden.recorded import DATA, read_provenance  # noqa: E402


def arguments(description: str, repository: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkout", type=Path, required=True, help=f"a checkout of github.com/{repository}")
    parser.add_argument("--commit", help="the checkout's commit (read with git when the checkout is a clone)")
    args = parser.parse_args()
    if not args.checkout.is_dir():
        parser.error(f"--checkout {args.checkout} is not a folder")
    if args.commit is None:
        run = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
        if run.returncode != 0:
            parser.error("--commit is required when --checkout is not a git clone")
        args.commit = run.stdout.strip()
    args.repository = repository
    sys.path.insert(0, str(args.checkout))
    return args


def stand_in(name: str, **attributes) -> types.ModuleType:
    """Register an importable module ``name`` (and its parents) holding ``attributes``, for a dependency that
    the recorded function never uses or that cannot run here; each script documents what it replaces and why."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    for i in range(1, len(parts)):
        setattr(sys.modules[".".join(parts[:i])], parts[i], sys.modules[".".join(parts[: i + 1])])
    module = sys.modules[name]
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def versions(*extra: str) -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numpy", "safetensors", *extra):
        found[name] = metadata.version(name)
    return found


def write(args, upstream: str, name: str, tensors: dict, *, file: str, function: str, seeds, extra_versions=()):
    """Write ``tests/golden/data/<upstream>/<name>`` (tensors made contiguous and CPU) with its provenance."""
    folder = DATA / upstream
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / f"{name}.safetensors"))
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    command = shlex.join(["python", str(script), "--checkout", "<checkout>", "--commit", args.commit])
    provenance = {
        "repository": f"https://github.com/{args.repository}",
        "commit": args.commit,
        "file": file,
        "function": function,
        "seeds": seeds,
        "versions": versions(*extra_versions),
        "command": command,
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    path = folder / f"{name}.provenance.json"
    path.write_text(json.dumps(provenance, indent=1) + "\n")
    read_provenance(path)
    size = (folder / f"{name}.safetensors").stat().st_size
    print(f"wrote {folder.relative_to(ROOT)}/{name} ({size / 1024:.1f} KiB)")
