"""PopcornPipeline end to end, offline: local transformers LMs, a real OpenAI client against a loopback
server, tiny Diffusers text-to-image / text-to-video pipelines, MP4 export, the CLI, and stage errors."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from hfgen.data.microlens import make_synthetic_microlens
from hfgen.data.text import word_tokenizer
from hfgen.pipelines import PopcornPipeline
from hfgen.pipelines.popcorn import (
    OpenAIChatLLM,
    PopcornStageError,
    PopularityRetriever,
    TransformersLLM,
    save_popcorn_outputs,
)
from hfgen.pipelines.popcorn.modeling_popularity import PopularityModel
from hfgen.testing.scripted_lm import ExtractiveLM, ExtractiveLMConfig, ScriptedLM, ScriptedLMConfig, byte_tokenizer
from hfgen.testing.tiny_models import tiny_chat_llama, tiny_popularity_config, tiny_text_to_image, tiny_text_to_video

PLAN = {"title": "Goku's five forms", "cover_prompt": "Goku glowing gold", "video_prompt": "A 3-second power-up"}
GEN = dict(height=32, width=32, num_frames=9, num_inference_steps=2, video_kwargs={"max_sequence_length": 16})


@pytest.fixture(scope="module")
def parts():
    tok = byte_tokenizer(model_max_length=16)  # text encoders of the tiny generators read 16 tokens
    table = make_synthetic_microlens(num_videos=48, num_frames=2, image_size=16, seed=0)
    words = word_tokenizer(table["title_en"])
    torch.manual_seed(0)
    return dict(tok=tok, chat_tok=byte_tokenizer(), table=table, words=words, t2i=tiny_text_to_image(tok),
                t2v=tiny_text_to_video(tok),
                scorer=PopularityModel(tiny_popularity_config(len(words), image_size=16, num_frames=2)).eval())


def scripted(parts, text=None):
    script = json.dumps(PLAN) if text is None else text
    return TransformersLLM(ScriptedLM(ScriptedLMConfig(script=script)), parts["chat_tok"], do_sample=False, max_new_tokens=300)


class ChatServer:
    """A stdlib OpenAI-compatible ``/v1/chat/completions`` server on loopback; ``answer(messages) -> str``."""

    def __init__(self, answer):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                outer.requests.append(body)
                reply = {"id": f"chatcmpl-{len(outer.requests)}", "object": "chat.completion", "created": 0,
                         "model": body["model"], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": answer(body["messages"])}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_end_to_end_local_lm_writes_plan_cover_and_playable_mp4(parts, tmp_path):
    import imageio

    pipe = PopcornPipeline(llm=scripted(parts), text_to_image=parts["t2i"], text_to_video=parts["t2v"],
                           popularity_model=parts["scorer"], popularity_tokenizer=parts["words"])
    out = pipe(["Dragon Ball transformations", "anime in pop culture"], generator=torch.Generator().manual_seed(0), **GEN)
    assert [p.to_dict() for p in out.plans] == [PLAN, PLAN]
    assert out.raw_llm_outputs == [[json.dumps(PLAN)]] * 2
    assert len(out.videos[0]) == 9 and out.covers[0].size == (32, 32) and out.popularity.shape == (2,)
    folders = save_popcorn_outputs(out, ["Dragon Ball transformations", "anime in pop culture"], tmp_path, fps=8)
    record = json.loads((folders[0] / "plan.json").read_text())
    assert record["plan"] == PLAN and record["raw_llm_outputs"] == [json.dumps(PLAN)]
    assert record["predicted_log2_comments"] == pytest.approx(float(out.popularity[0]))
    with imageio.get_reader(folders[0] / "video.mp4") as reader:
        frames = [f for f in reader]
    assert len(frames) == 9 and frames[0].shape == (32, 32, 3)
    assert (folders[0] / "cover.png").is_file() and (folders[1] / "score.json").is_file()
    same = pipe("Dragon Ball transformations", generator=torch.Generator().manual_seed(0), output_type="np", **GEN)
    np.testing.assert_allclose(same.videos[0], np.stack([np.asarray(f) / 255.0 for f in out.videos[0]]), atol=1 / 255 + 1e-6)


def test_random_tiny_lm_is_retried_then_fails_naming_the_plan_stage(parts):
    llm = TransformersLLM(tiny_chat_llama(parts["chat_tok"]), parts["chat_tok"], max_new_tokens=12)
    pipe = PopcornPipeline(llm=llm)
    with pytest.raises(PopcornStageError, match=r"\[plan stage\] no valid plan after 3 attempt\(s\)") as err:
        pipe("Create a video about street food", max_retries=2)
    assert len(err.value.raw_outputs) == 3 and all(isinstance(t, str) for t in err.value.raw_outputs)


def test_openai_endpoint_retries_a_malformed_answer_then_succeeds(parts):
    answers = iter(["Sure! Here is my idea: a video about ramen.", json.dumps(PLAN)])
    with ChatServer(lambda messages: next(answers)) as server:
        llm = OpenAIChatLLM("tiny-chat", base_url=server.url, api_key="EMPTY", max_retries=0, temperature=0.7)
        out = PopcornPipeline(llm=llm, text_to_video=parts["t2v"])("A ramen recipe video", **GEN)
    assert out.plans[0].to_dict() == PLAN and len(out.raw_llm_outputs[0]) == 2 and len(server.requests) == 2
    assert server.requests[0]["model"] == "tiny-chat" and server.requests[0]["temperature"] == 0.7
    assert len(out.videos[0]) == 9


def test_enhanced_prompt_reaches_the_endpoint_and_the_plan_uses_popular_references(parts):
    retriever = PopularityRetriever(parts["table"], embedder="tfidf")
    answer = lambda messages: ExtractiveLM.script(None, messages[-1]["content"])  # noqa: E731
    with ChatServer(answer) as server:
        pipe = PopcornPipeline(llm=OpenAIChatLLM("tiny-chat", base_url=server.url, max_retries=0), retriever=retriever)
        basic = pipe("a video about anime cosplay")
        enhanced = pipe("a video about anime cosplay", use_retrieval=True, use_chain_of_thought=True, num_references=10)
    sent = server.requests[-1]["messages"][-1]["content"]
    assert "(Positive Sample - Popular)" in sent and "Reasoning Chain" in sent
    assert "Reference Video" not in server.requests[0]["messages"][-1]["content"]
    assert basic.plans[0].title == "a video about anime cosplay"
    positives, _ = retriever.references("a video about anime cosplay", 10)
    assert enhanced.plans[0].cover_prompt == max(positives, key=lambda r: r["comment_count"])["cover_desc"]


def test_the_same_local_extractive_lm_gives_the_same_plan_as_the_endpoint(parts):
    llm = TransformersLLM(ExtractiveLM(ExtractiveLMConfig()), parts["chat_tok"], do_sample=False, max_new_tokens=400)
    out = PopcornPipeline(llm=llm)("a video about anime cosplay")
    assert out.plans[0].title == "a video about anime cosplay"


def test_always_malformed_endpoint_fails_after_the_last_retry(parts):
    with ChatServer(lambda messages: '{"title": "only a title"}') as server:
        pipe = PopcornPipeline(llm=OpenAIChatLLM("m", base_url=server.url, max_retries=0))
        with pytest.raises(PopcornStageError, match=r"plan stage.*after 2 attempt.*lacks the field\(s\) \['cover_prompt', 'video_prompt'\]") as err:
            pipe("a travel vlog", max_retries=1)
    assert err.value.raw_outputs == ['{"title": "only a title"}'] * 2


def test_unreachable_endpoint_names_the_llm_stage():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    pipe = PopcornPipeline(llm=OpenAIChatLLM("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5))
    with pytest.raises(PopcornStageError, match=r"\[llm stage\] could not reach the OpenAI-compatible endpoint"):
        pipe("a travel vlog")


def test_bad_inputs_name_their_stage(parts):
    llm = scripted(parts)
    with pytest.raises(PopcornStageError, match=r"\[query stage\]"):
        PopcornPipeline(llm=llm)("   ")
    with pytest.raises(PopcornStageError, match=r"\[video stage\].*StableDiffusionPipeline is not.*num_frames"):
        PopcornPipeline(llm=llm, text_to_video=parts["t2i"])
    with pytest.raises(PopcornStageError, match=r"\[cover stage\].*LTXPipeline is not"):
        PopcornPipeline(llm=llm, text_to_image=parts["t2v"])
    with pytest.raises(PopcornStageError, match=r"\[retrieval stage\]"):
        PopcornPipeline(llm=llm)("anime", use_retrieval=True)
    with pytest.raises(PopcornStageError, match=r"\[llm stage\]"):
        PopcornPipeline(llm="gpt-4o")
    with pytest.raises(PopcornStageError, match=r"\[popularity stage\].*both"):
        PopcornPipeline(llm=llm, popularity_model=parts["scorer"], popularity_tokenizer=parts["words"])("anime")


def test_image_to_video_pipeline_is_refused_as_text_to_video(parts):
    from diffusers import LTXImageToVideoPipeline

    i2v = LTXImageToVideoPipeline(**parts["t2v"].components)
    with pytest.raises(PopcornStageError, match=r"\[video stage\].*LTXImageToVideoPipeline is not: it takes \['image'\]"):
        PopcornPipeline(llm=scripted(parts), text_to_video=i2v)


def test_cli_writes_plan_cover_mp4_and_score(parts, tmp_path, capsys):
    import imageio

    from hfgen.cli import main

    llm_dir, t2v_dir, t2i_dir, scorer_dir = (tmp_path / n for n in ("llm", "t2v", "t2i", "scorer"))
    ScriptedLM(ScriptedLMConfig(script=json.dumps(PLAN))).save_pretrained(llm_dir)
    parts["chat_tok"].save_pretrained(llm_dir)
    parts["t2v"].save_pretrained(t2v_dir)
    parts["t2i"].save_pretrained(t2i_dir)
    parts["scorer"].save_pretrained(scorer_dir)
    parts["words"].save_pretrained(scorer_dir)
    out_dir = tmp_path / "out"
    rc = main(["popcorn", "Dragon Ball transformations", "--llm", str(llm_dir), "--video-model", str(t2v_dir),
               "--image-model", str(t2i_dir), "--popularity-model", str(scorer_dir), "--output-dir", str(out_dir),
               "--num-frames", "9", "--height", "32", "--width", "32", "--steps", "2", "--max-sequence-length", "16"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out_dir / "plan.json").read_text())["plan"] == PLAN
    assert "predicted_log2_comments" in json.loads((out_dir / "score.json").read_text())
    with imageio.get_reader(out_dir / "video.mp4") as reader:
        assert sum(1 for _ in reader) == 9
    assert main(["popcorn", " ", "--llm", str(llm_dir), "--output-dir", str(out_dir)]) == 2
    assert "[query stage]" in capsys.readouterr().err


def test_save_pretrained_round_trips_generators_and_scorer(parts, tmp_path):
    pipe = PopcornPipeline(llm=scripted(parts), text_to_image=parts["t2i"], text_to_video=parts["t2v"],
                           popularity_model=parts["scorer"], popularity_tokenizer=parts["words"])
    pipe.save_pretrained(tmp_path / "popcorn")
    assert "hfgen-popcorn" in (tmp_path / "popcorn" / "README.md").read_text()
    assert not list((tmp_path / "popcorn").rglob("*.bin"))  # safetensors only
    with pytest.raises(PopcornStageError, match="pass `llm=` to from_pretrained"):
        PopcornPipeline.from_pretrained(tmp_path / "popcorn")
    loaded = PopcornPipeline.from_pretrained(tmp_path / "popcorn", llm=scripted(parts))
    a, b = (p("anime", generator=torch.Generator().manual_seed(0), output_type="np", **GEN) for p in (pipe, loaded))
    np.testing.assert_allclose(b.videos, a.videos, atol=1e-5)
    np.testing.assert_allclose(b.covers, a.covers, atol=1e-5)
    np.testing.assert_allclose(b.popularity, a.popularity, atol=1e-5)
