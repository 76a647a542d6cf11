"""hfgen's transformers models; importing this package registers them with AutoConfig / AutoModel."""

from hfgen.models.sasrec import SASRecConfig, SASRecModel

__all__ = ["SASRecConfig", "SASRecModel"]
