"""Negative-aware Fine-Tuning (NFT, arXiv 2505.18116) on TRL's GRPOTrainer; RFT is ``neg_weight=0``."""

from .nft_config import NFTConfig
from .nft_trainer import NFTTrainer, clamp_preserve_grad, nft_per_token_loss, question_weights

__all__ = ["NFTConfig", "NFTTrainer", "clamp_preserve_grad", "nft_per_token_loss", "question_weights"]
