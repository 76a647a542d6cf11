"""What a test suite of hfgen or of a plugin uses: the loopback Hub [`FakeHub`] (``huggingface_hub``'s real client
against a Hub-compatible server on 127.0.0.1), tiny seeded models ([`hfgen.testing.tiny_models`]: the one home of the
small models that hfgen's tests and demos build), offline stand-in LLMs ([`hfgen.testing.scripted_lm`]), tiny
pipelines of every method ([`hfgen.testing.tiny_pipelines`]), and the conformance kits of
[`hfgen.testing.conformance`] ([`check_manifest`], [`check_demo`], [`check_pipeline`], [`check_trainer`]), the
checks hfgen's own methods pass. Imported on first use.
"""

from hfgen._lazy import lazy_exports

EXPORTS = {
    "FakeHub": "hfgen.testing.fake_hub",
    "check_demo": "hfgen.testing.conformance",
    "check_manifest": "hfgen.testing.conformance",
    "check_pipeline": "hfgen.testing.conformance",
    "check_trainer": "hfgen.testing.conformance",
    "manifest_checks": "hfgen.testing.conformance",
}

__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
__all__ = sorted(EXPORTS)
