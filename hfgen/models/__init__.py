"""hfgen's transformers models. They register with ``AutoConfig`` / ``AutoModel`` when imported; a plain
``import hfgen`` is enough for the Auto classes to find them (and every other hfgen model type: see
[`hfgen._auto`]), without importing them until a saved one is loaded."""

from hfgen.models.mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM
from hfgen.models.mf2 import MF2Config, MF2Model
from hfgen.models.sasrec import SASRecConfig, SASRecModel

__all__ = ["MDLMDiTConfig", "MDLMDiTForMaskedLM", "MF2Config", "MF2Model", "SASRecConfig", "SASRecModel"]
