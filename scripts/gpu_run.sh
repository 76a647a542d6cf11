#!/usr/bin/env bash
# The one line to run on the offline GPU machine, from the repository root, with gpu_wheels/ carried along:
#
#   bash scripts/gpu_run.sh [gpu_check.py arguments, e.g. --only bench/]
#
# Installs each wheel of $WHEELS (default gpu_wheels/, made by scripts/gpu_wheels.sh) whose distribution the image
# lacks or has in an older version (transformers 5.17 -> 5.20), then hfgen itself (editable, no network, no
# dependency resolution), then runs scripts/gpu_check.py on CUDA.
# The JSON lines and a raw record land in $OUT (the device tool's output folder) or gpu_check_out/.
set -uo pipefail
wheels=${WHEELS:-gpu_wheels}
out=${OUT:-gpu_check_out}
mkdir -p "$out"
missing=$(python - "$wheels" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.version import Version

for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    name, wanted = wheel.name.split("-")[:2]
    try:
        if Version(version(name)) < Version(wanted):
            print(wheel)
    except PackageNotFoundError:
        print(wheel)
PY
)
if [ -n "$missing" ]; then
    python -m pip install --quiet --no-index --no-deps $missing
fi
python -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
python scripts/gpu_check.py --device cuda --jsonl "$out/gpu_check.jsonl" --out "$out/raw" "$@"
