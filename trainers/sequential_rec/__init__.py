"""Sequential recommendation with side-adapted item encoders (IISAN, CROSSAN) on transformers' Trainer."""

from hfgen.trainers.sequential_rec.sequential_rec_config import SequentialRecConfig
from hfgen.trainers.sequential_rec.sequential_rec_trainer import (
    SequentialRecCollator,
    SequentialRecommender,
    SequentialRecTrainer,
    in_batch_softmax_loss,
)

__all__ = ["SequentialRecCollator", "SequentialRecConfig", "SequentialRecTrainer", "SequentialRecommender",
           "in_batch_softmax_loss"]
