"""AU F1 (per Action Unit and mean) as an ``evaluate`` module, loadable from this local folder (no Hub).

    import evaluate
    from hfgen.metrics.face import au_f1_module_path
    au_f1 = evaluate.load(au_f1_module_path())
    au_f1.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]], au_names=["AU1", "AU2"])
    # {'f1_AU1': 0.666..., 'f1_AU2': 1.0, 'mean_f1': 0.833...}

The math lives in [`hfgen.metrics.face.au_f1`].
"""

import datasets
import evaluate

from hfgen.metrics.face import au_f1

_CITATION = """@inproceedings{zheng2025mf2,
  title={Multimodal Representation Learning Techniques for Comprehensive Facial State Analysis},
  author={Zheng, Kaiwen and Ge, Xuri and Fu, Junchen and Peng, Jun and Jose, Joemon M.},
  booktitle={IEEE International Conference on Multimedia and Expo (ICME)}, year={2025}}"""


class AUF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 of each facial Action Unit (multi-label occurrence) and their mean.",
            citation=_CITATION,
            inputs_description="predictions, references: lists of K 0/1 AU occurrences; au_names: K names.",
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float32")),
                "references": datasets.Sequence(datasets.Value("int32")),
            }),
        )

    def _compute(self, predictions, references, au_names=None, threshold=None):
        return au_f1(predictions, references, au_names=au_names, threshold=threshold)
