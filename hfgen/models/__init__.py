"""hfgen's transformers models; importing this package registers them with AutoConfig / AutoModel."""

from hfgen.models.mf2 import MF2Config, MF2Model
from hfgen.models.sasrec import SASRecConfig, SASRecModel

__all__ = ["MF2Config", "MF2Model", "SASRecConfig", "SASRecModel"]
