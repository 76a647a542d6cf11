"""PopcornPipeline against a real OpenAI-compatible server: `transformers serve` on loopback, through the
real `openai` client, serving a tiny random Llama from a local folder (offline)."""

import os
import socket
import subprocess
import time
import urllib.request

import pytest

from hfgen.pipelines.popcorn.llm import OpenAIChatLLM
from hfgen.pipelines.popcorn.pipeline_popcorn import PopcornPipeline, PopcornStageError
from hfgen.testing.scripted_lm import byte_tokenizer
from hfgen.testing.tiny_models import tiny_chat_llama


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served") / "tiny-chat"
    tokenizer = byte_tokenizer()
    tiny_chat_llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(["transformers", "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("`transformers serve` did not come up") from None
                time.sleep(0.5)
        yield str(folder), f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_real_server_answer_goes_through_retries_then_a_clear_plan_stage_error(served_model):
    model, base_url = served_model
    llm = OpenAIChatLLM(model, base_url=base_url, api_key="EMPTY", max_retries=0, max_tokens=16)
    with pytest.raises(PopcornStageError, match=r"\[plan stage\] no valid plan after 2 attempt\(s\)") as err:
        PopcornPipeline(llm=llm)("a video about street food", max_retries=1)
    # both answers came back from the server over HTTP (a random model writes no JSON plan) and are kept
    assert len(err.value.raw_outputs) == 2 and all(isinstance(t, str) and t for t in err.value.raw_outputs)
