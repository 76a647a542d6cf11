"""hfgen: recent generative-modelling methods as native Hugging Face components.

Importing hfgen is cheap: components are imported when first used.
"""

__version__ = "0.1.0"

from hfgen.registry import BrokenMethod, MethodInfo, Paper, get_method, list_methods, register  # noqa: E402


def load(name_or_path, **kwargs):
    """Load a saved hfgen artifact (pipeline, model, adapter) from a folder or a Hub repo id."""
    from hfgen.hub import load as _load

    return _load(name_or_path, **kwargs)


def push(folder, repo_id, **kwargs):
    """Upload a saved hfgen artifact folder to the Hub (one commit); returns the commit URL."""
    from hfgen.hub import push as _push

    return _push(folder, repo_id, **kwargs)


from hfgen import _auto  # noqa: E402

_auto.install()  # hfgen's transformers models join AutoConfig / AutoModel when transformers' Auto module loads

__all__ = ["BrokenMethod", "MethodInfo", "Paper", "__version__", "get_method", "list_methods", "load", "push", "register"]
