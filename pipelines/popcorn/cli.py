"""``hfgen popcorn "query" --llm ... --video-model ... --output-dir ...`` (import-cheap: torch loads in the command)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("popcorn", help="plan, generate and score a popular micro-video with LLMPopcorn",
                              description="LLMPopcorn: an LLM plans a title, cover prompt and video prompt; Diffusers "
                                          "makes the cover (PNG) and the clip (MP4); a popularity model scores it.")
    p.add_argument("query", nargs="+", help="the user query (several queries: one sub-folder each)")
    p.add_argument("--llm", required=True, help="local causal LM (folder or id), or the served model's name with --api-base")
    p.add_argument("--api-base", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY, or 'EMPTY')")
    p.add_argument("--video-model", default=None, help="Diffusers text-to-video pipeline (folder or id), e.g. Lightricks/LTX-Video")
    p.add_argument("--image-model", default=None, help="Diffusers text-to-image pipeline for the cover (folder or id)")
    p.add_argument("--popularity-model", default=None, help="folder of a saved PopularityModel and its tokenizer")
    p.add_argument("--table", default=None, help="MicroLens-style table (.csv/.jsonl/.parquet) for retrieval")
    p.add_argument("--embedder", default=None, help="retrieval embedder: 'minilm', 'tfidf' or a sentence-transformers folder")
    p.add_argument("--rag", action="store_true", help="add popular / unpopular reference videos to the prompt (needs --table)")
    p.add_argument("--cot", action="store_true", help="add the chain-of-thought reasoning steps to the prompt")
    p.add_argument("--num-references", type=int, default=10, help="reference videos with --rag (default: 10)")
    p.add_argument("--max-retries", type=int, default=2, help="extra LLM calls when the answer has no valid plan (default: 2)")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="LLM answer budget (default: 1024)")
    p.add_argument("--num-frames", type=int, default=None, help="video frames (default: the video pipeline's)")
    p.add_argument("--height", type=int, default=None, help="output height (default: the pipelines')")
    p.add_argument("--width", type=int, default=None, help="output width (default: the pipelines')")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipelines')")
    p.add_argument("--max-sequence-length", type=int, default=None, help="text-encoder length of the video pipeline")
    p.add_argument("--fps", type=int, default=8, help="MP4 frame rate (default: 8)")
    p.add_argument("--seed", type=int, default=42, help="random seed (LLMPopcorn: 42)")
    p.add_argument("--output-dir", required=True, help="where plan.json, cover.png, video.mp4 and score.json go")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    from diffusers import DiffusionPipeline

    from .llm import OpenAIChatLLM, TransformersLLM
    from .parsing import PopcornStageError
    from .pipeline_popcorn import PopcornPipeline, save_popcorn_outputs

    if args.rag and not args.table:
        raise ValueError("--rag needs --table (a MicroLens-style table).")
    from pathlib import Path

    Path(args.output_dir).mkdir(parents=True, exist_ok=True)  # an unwritable --output-dir fails before any model loads
    if not args.api_base and not Path(args.llm).is_dir() and (args.llm.count("/") != 1 or args.llm.startswith((".", "/"))):
        raise FileNotFoundError(f"--llm {args.llm!r} is neither an existing folder nor a Hub repo id ('namespace/name').")
    if not args.api_base and Path(args.llm).is_dir() and not (Path(args.llm) / "config.json").is_file():
        raise FileNotFoundError(f"--llm {args.llm!r} holds no config.json: expected a saved causal LM folder "
                                "(config.json, weights and tokenizer files).")
    if args.api_base:
        llm = OpenAIChatLLM(args.llm, base_url=args.api_base, api_key=args.api_key, max_tokens=args.max_new_tokens)
    else:
        llm = TransformersLLM(args.llm, max_new_tokens=args.max_new_tokens)
    retriever = None
    if args.table:
        from hfgen.data.microlens import load_microlens

        from .retrieval import PopularityRetriever, SentenceEmbedder

        embedder = args.embedder
        if embedder not in (None, "minilm", "tfidf"):
            embedder = SentenceEmbedder(embedder)
        retriever = PopularityRetriever(load_microlens(args.table), embedder=embedder)
    popularity_model = popularity_tokenizer = None
    if args.popularity_model:
        from transformers import AutoModel, AutoTokenizer

        from . import modeling_popularity  # noqa: F401  (registers hfgen_popularity)

        popularity_model = AutoModel.from_pretrained(args.popularity_model).eval()
        popularity_tokenizer = AutoTokenizer.from_pretrained(args.popularity_model)
    load = lambda ref: DiffusionPipeline.from_pretrained(ref) if ref else None  # noqa: E731
    try:
        pipe = PopcornPipeline(llm=llm, text_to_image=load(args.image_model), text_to_video=load(args.video_model),
                               popularity_model=popularity_model, popularity_tokenizer=popularity_tokenizer,
                               retriever=retriever)
        video_kwargs = {"max_sequence_length": args.max_sequence_length} if args.max_sequence_length else None
        out = pipe(args.query, use_retrieval=args.rag, use_chain_of_thought=args.cot, num_references=args.num_references,
                   max_retries=args.max_retries, height=args.height, width=args.width, num_frames=args.num_frames,
                   num_inference_steps=args.steps, video_kwargs=video_kwargs,
                   generator=torch.Generator().manual_seed(args.seed))
    except PopcornStageError as err:
        raise ValueError(str(err)) from None
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "api_key", "query", "command")}
    folders = save_popcorn_outputs(out, args.query, args.output_dir, fps=args.fps, settings=settings)
    for i, (folder, plan) in enumerate(zip(folders, out.plans)):
        score = "" if out.popularity is None else f"; predicted log2(1 + comments) = {out.popularity[i]:.3f}"
        print(f"{folder}: {plan.title!r}{score}")
    return 0
