"""Test environment: offline, isolated Hub cache, fake-Hub fixture.

The Hub environment is set here, before anything imports huggingface_hub (its endpoint and cache
paths are read at import time).
"""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

_HF_HOME = tempfile.mkdtemp(prefix="hfgen-tests-hf-home-")
os.environ.setdefault("HF_HOME", _HF_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_UPDATE_CHECK"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import socket  # noqa: E402

import pytest  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The fake Hub's address is fixed now, before huggingface_hub is imported by any test module;
# the server itself starts only when a test asks for the `fake_hub` fixture.
_FAKE_HUB_PORT = _free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{_FAKE_HUB_PORT}"
os.environ["HF_TOKEN"] = "hf_fake_ci_token"


@pytest.fixture(scope="session")
def _fake_hub_server():
    from hfgen.testing.fake_hub import FakeHub

    with FakeHub(port=_FAKE_HUB_PORT) as hub:
        yield hub


@pytest.fixture
def fake_hub(_fake_hub_server, monkeypatch):
    """The loopback Hub, with offline mode lifted for the duration of the test."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return _fake_hub_server


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)`` imports ``scripts/<name>.py`` as a module (with ``scripts/`` on ``sys.path``, so a script
    may import its shared helpers, e.g. ``iisan_common``)."""

    def load(name: str):
        if str(SCRIPTS) not in sys.path:
            sys.path.insert(0, str(SCRIPTS))
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
