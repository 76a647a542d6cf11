"""Offline tests with a loopback Hub: the Hub address is set before anything imports ``huggingface_hub``."""

import os
import socket
import tempfile

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    PORT = s.getsockname()[1]
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{PORT}"
os.environ["HF_TOKEN"] = "hf_fake_token"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="toyflow-hf-home-")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_OFFLINE"] = "0"  # the only Hub these tests reach is the loopback one

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fake_hub():
    from hfgen.testing import FakeHub

    with FakeHub(port=PORT) as hub:
        yield hub
