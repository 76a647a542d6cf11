"""HR@K and NDCG@K as an ``evaluate`` module, loadable from this local folder (no Hub).

    import evaluate, hfgen.metrics
    ranking = evaluate.load(hfgen.metrics.ranking_module_path())
    ranking.compute(predictions=[[5, 3, 9], [1, 2, 4]], references=[3, 7], k=10)
    # {'hr@10': 0.5, 'ndcg@10': 0.3154...}

``predictions`` are ranked item lists (best first, history already removed), ``references`` the
target items. The math lives in [`hfgen.metrics.ranking`].
"""

import datasets
import evaluate

from hfgen.metrics.ranking import hit_rate_at_k, ndcg_at_k, ranks_from_lists

_CITATION = """@inproceedings{fu2024iisan,
  title={IISAN: Efficiently Adapting Multimodal Representation for Sequential Recommendation with Decoupled PEFT},
  author={Fu, Junchen and Ge, Xuri and Xin, Xin and Karatzoglou, Alexandros and Arapakis, Ioannis and Wang, Jie and Jose, Joemon M.},
  booktitle={SIGIR}, year={2024}}"""


class Ranking(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Hit rate and NDCG at K of a single target item in a ranked list.",
            citation=_CITATION,
            inputs_description="predictions: list of ranked item-id lists; references: list of target ids; k: cut-off.",
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("int64")),
                "references": datasets.Value("int64"),
            }),
        )

    def _compute(self, predictions, references, k=10):
        ranks = ranks_from_lists(predictions, references)
        return {f"hr@{k}": hit_rate_at_k(ranks, k), f"ndcg@{k}": ndcg_at_k(ranks, k)}
