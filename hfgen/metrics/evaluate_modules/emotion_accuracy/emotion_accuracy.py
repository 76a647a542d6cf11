"""Emotion (top-1) accuracy as an ``evaluate`` module, loadable from this local folder (no Hub).

    import evaluate
    from hfgen.metrics.face import emotion_accuracy_module_path
    acc = evaluate.load(emotion_accuracy_module_path())
    acc.compute(predictions=[0, 2, 1], references=[0, 2, 2])   # {'accuracy': 0.666...}

The math lives in [`hfgen.metrics.face.emotion_accuracy`].
"""

import datasets
import evaluate

from hfgen.metrics.face import emotion_accuracy


class EmotionAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Top-1 accuracy of emotion class predictions.",
            citation="",
            inputs_description="predictions: predicted class ids; references: true class ids.",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": emotion_accuracy(predictions, references)}
