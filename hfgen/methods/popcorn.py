"""Registry entry of LLMPopcorn (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="popcorn",
    summary="LLMPopcorn: query to micro-video (LLM plan, Diffusers cover and video, popularity score)",
    description=(
        "LLMPopcorn: an LLM (local transformers model or OpenAI-compatible endpoint), optionally enhanced with "
        "retrieved popular / unpopular videos and a chain-of-thought prompt, plans a micro-video's title, cover and "
        "video prompts; Diffusers text-to-image / text-to-video make it; an MMRA-style model predicts its popularity."
    ),
    paper=Paper(
        title="LLMPopcorn: Exploring LLMs as Assistants for Popular Micro-video Generation",
        arxiv_id="2502.12945",
        citation=(
            "@inproceedings{fu2026llmpopcorn,\n"
            "  title={LLMPopcorn: Exploring LLMs as Assistants for Popular Micro-video Generation},\n"
            "  author={Fu, Junchen and Ge, Xuri and Zheng, Kaiwen and Karatzoglou, Alexandros and Arapakis, Ioannis "
            "and Xin, Xin and Ni, Yongxin and Jose, Joemon M.},\n"
            "  booktitle={IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},\n"
            "  year={2026}\n"
            "}"
        ),
        code_url="https://github.com/GAIR-Lab/LLMPopcorn",
    ),
    components={
        "PopcornPipeline": "hfgen.pipelines.popcorn.pipeline_popcorn:PopcornPipeline",
        "PopularityModel": "hfgen.pipelines.popcorn.modeling_popularity:PopularityModel",
        "PopularityConfig": "hfgen.pipelines.popcorn.modeling_popularity:PopularityConfig",
        "TransformersLLM": "hfgen.pipelines.popcorn.llm:TransformersLLM",
        "OpenAIChatLLM": "hfgen.pipelines.popcorn.llm:OpenAIChatLLM",
        "PopularityRetriever": "hfgen.pipelines.popcorn.retrieval:PopularityRetriever",
    },
    card_template="hfgen.model_cards:popcorn.md",
    demo="hfgen.demos.popcorn:run",
    tags=("llmpopcorn", "micro-video", "text-to-video", "popularity-prediction", "rag"),
    pipeline_tag="text-to-video",
    cli="hfgen.pipelines.popcorn.cli:add_parser",
    auto_models={"hfgen_popularity": "PopularityModel"},
    position=10,
)
