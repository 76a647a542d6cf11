"""The transformers models that several of hfgen's methods share: [`SASRecModel`] (IISAN's and CROSSAN's
recommender) and [`MF2Model`] (MF^2's face model, which DFN adapts). A method's own models live in its pipelines
folder (``hfgen.pipelines.<method>.modeling_*``). Each registers with ``AutoConfig`` / ``AutoModel`` when imported; a
plain ``import hfgen`` is enough for the Auto classes to find every hfgen model type (see [`hfgen._auto`]).
Imported on first use; ``MDLMDiTConfig`` / ``MDLMDiTForMaskedLM`` are still exported from their old home here."""

from hfgen._lazy import lazy_exports

EXPORTS = {
    "MF2Config": "mf2",
    "MF2Model": "mf2",
    "SASRecConfig": "sasrec",
    "SASRecModel": "sasrec",
    "MDLMDiTConfig": "hfgen.pipelines.masked_diffusion.modeling_mdlm_dit",
    "MDLMDiTForMaskedLM": "hfgen.pipelines.masked_diffusion.modeling_mdlm_dit",
}

__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
__all__ = sorted(EXPORTS)
