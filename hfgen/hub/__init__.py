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

The code lives in four modules, each importable from ``hfgen.hub``: [`hfgen.hub.cards`],
[`hfgen.hub.saving`], [`hfgen.hub.remote`] and [`hfgen.hub.mixins`].
"""

from .cards import (  # noqa: F401
    _card_template,
    _template_target,
    card_failure,
    card_template_problem,
    registered_component,
    render_model_card,
    save_model_card,
    save_model_card_or_warn,
)
from .mixins import (  # noqa: F401
    HfgenPipelineMixin,
    SafeSaveMixin,
)
from .remote import (  # noqa: F401
    _load_verified,
    _read_json,
    import_registered_libraries,
    load,
    push,
    resolve_folder,
    upload_folder,
    upload_plan,
)
from .saving import (  # noqa: F401
    _CHECKPOINT_DIR,
    _HOST,
    _RETRIES,
    _STAGING_OWNER,
    _VERIFIED,
    CHECKSUMS_NAME,
    MARKER_NAMES,
    PICKLE_SUFFIXES,
    PICKLE_WEIGHT_NAMES,
    SAFE_WEIGHT_SUFFIX,
    STAGING_PREFIX,
    UNLISTED_NAMES,
    ConcurrentSaveError,
    UnsafeWeightsError,
    _commit,
    _files_inside,
    _generation,
    _is_pickle,
    _is_weights,
    _other_kind,
    _pid_alive,
    _saved_files,
    _sha256,
    _staging_is_live,
    _verified,
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
