"""Model cards, safe saving, pushing to the Hub and loading any saved hfgen artifact.

- [`render_model_card`] / [`save_model_card`] fill ``model_cards/<method>.md`` with the
  Hub metadata every hfgen card carries (``library_name: hfgen``, ``hfgen`` and ``hfgen-<method>``
  tags, the paper, base model, data sets, training config, ``model-index`` results).
- [`atomic_save_dir`] writes a folder under a temporary name and renames it into place, so an
  interrupted save never leaves a half-written folder where a good one was; [`verify_folder`]
  checks a saved folder's safetensors against the checksums written with it.
- [`push`] uploads a saved folder with ``huggingface_hub`` in one commit; [`HfgenPipelineMixin`] gives
  hfgen's Diffusers pipelines ``from_pretrained`` of a Hub repo id and ``save_pretrained`` / ``push_to_hub`` that
  carry the hfgen card.
- [`load`] loads a local folder or a Hub repo id, dispatching on what the folder holds.

Weights are safetensors only: a folder that holds only pickle weights is refused unless the caller
passes ``allow_pickle=True`` (and even then nothing is unpickled by hfgen itself).

The code lives in four modules, whose public names are importable from ``hfgen.hub``: [`hfgen.hub.cards`],
[`hfgen.hub.saving`], [`hfgen.hub.remote`] and [`hfgen.hub.mixins`] (private helpers are imported from their own
module).
"""

from .cards import (
    card_failure,
    card_template_problem,
    registered_component,
    render_model_card,
    save_model_card,
    save_model_card_or_warn,
)
from .mixins import HfgenPipelineMixin, SafeSaveMixin
from .remote import import_registered_libraries, load, push, resolve_folder, upload_folder, upload_plan
from .saving import (
    CHECKSUMS_NAME,
    MARKER_NAMES,
    PICKLE_SUFFIXES,
    PICKLE_WEIGHT_NAMES,
    SAFE_WEIGHT_SUFFIX,
    STAGING_PREFIX,
    UNLISTED_NAMES,
    ConcurrentSaveError,
    UnsafeWeightsError,
    atomic_save_dir,
    check_weights_safe,
    clean_stale_staging,
    consistent_load,
    save_in_progress,
    verify_folder,
    verify_once,
    verify_safetensors,
    write_checksums,
)

__all__ = [
    "CHECKSUMS_NAME", "MARKER_NAMES", "PICKLE_SUFFIXES", "PICKLE_WEIGHT_NAMES", "SAFE_WEIGHT_SUFFIX", "STAGING_PREFIX",
    "UNLISTED_NAMES", "ConcurrentSaveError", "HfgenPipelineMixin", "SafeSaveMixin", "UnsafeWeightsError",
    "atomic_save_dir", "card_failure", "card_template_problem", "check_weights_safe", "clean_stale_staging",
    "consistent_load", "import_registered_libraries", "load", "push", "registered_component", "render_model_card",
    "resolve_folder", "save_in_progress", "save_model_card", "save_model_card_or_warn", "upload_folder", "upload_plan",
    "verify_folder", "verify_once", "verify_safetensors", "write_checksums",
]
