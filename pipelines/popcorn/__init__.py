"""LLMPopcorn (arXiv 2502.12945): LLM-planned popular micro-videos, generated with Diffusers and scored
with an MMRA-style popularity model."""

from hfgen._lazy import lazy_exports

_EXPORTS = {
    "PopcornPipeline": "pipeline_popcorn",
    "PopcornPipelineOutput": "pipeline_popcorn",
    "save_popcorn_outputs": "pipeline_popcorn",
    "PopcornPlan": "parsing",
    "PopcornStageError": "parsing",
    "parse_plan": "parsing",
    "build_messages": "prompts",
    "LLMBackend": "llm",
    "TransformersLLM": "llm",
    "OpenAIChatLLM": "llm",
    "PopularityRetriever": "retrieval",
    "SentenceEmbedder": "retrieval",
    "TfidfEmbedder": "retrieval",
    "PopularityConfig": "modeling_popularity",
    "PopularityModel": "modeling_popularity",
    "PopularityCollator": "modeling_popularity",
    "popularity_metrics": "modeling_popularity",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
