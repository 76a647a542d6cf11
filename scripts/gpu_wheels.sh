#!/usr/bin/env bash
# Wheels for the offline GPU machine, whose image has torch 2.11, transformers 5.17, peft, accelerate and safetensors
# but not diffusers, trl, datasets or evaluate. Run here (PyPI reachable), then carry the folder (git-ignored):
#
#   bash scripts/gpu_wheels.sh [FOLDER=gpu_wheels] [PYTHON_VERSION=3.12] [EXTRA_PACKAGES...]
#
# The default set (~29 MB) is what the pipeline, benchmark and MaskedDiffusionTrainer checks need (diffusers and
# Pillow), transformers 5.20 (hfgen's floor: the image's 5.17 lacks `SubConfigSpec`; it works with the image's
# huggingface-hub 1.x and tokenizers), plus trl, datasets, evaluate and their small dependencies. datasets also needs pyarrow (54 MB for
# cp312) and pandas (12 MB), and some demos scipy (35 MB): these do not all fit in the 64 MiB a device call
# carries, so they are extras, e.g. `bash scripts/gpu_wheels.sh gpu_wheels 3.12 pyarrow` when the image lacks
# pyarrow but has pandas. gpu_check's first JSON line lists what the image is missing; a check whose import fails
# reports it and the run goes on. scripts/gpu_run.sh installs the folder without network and runs the check.
set -euo pipefail
folder=${1:-gpu_wheels}
python_version=${2:-3.12}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$folder"
# the versions this repository is tested with (setup.py's ranges)
packages=(diffusers==0.42.1 importlib_metadata zipp pillow setuptools transformers==5.20.0
          trl==1.16.0 datasets==5.2.0 evaluate==0.4.6 "dill<0.4.2" "multiprocess<0.70.20" xxhash "fsspec<=2026.9.0"
          jinja2 markupsafe "$@")
python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --dest "$folder" "${packages[@]}"
size_kib=$(du -sk "$folder" | cut -f1)
echo "$folder: $(ls "$folder" | wc -l) wheels, $((size_kib / 1024)) MiB"
if (( size_kib > 64 * 1024 )); then
    echo "warning: more than the 64 MiB a device call carries; drop an extra" >&2
fi
