"""hfgen's transformers models; importing this package registers them with AutoConfig / AutoModel."""

from hfgen.models.mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM
from hfgen.models.mf2 import MF2Config, MF2Model
from hfgen.models.sasrec import SASRecConfig, SASRecModel

__all__ = ["MDLMDiTConfig", "MDLMDiTForMaskedLM", "MF2Config", "MF2Model", "SASRecConfig", "SASRecModel"]
