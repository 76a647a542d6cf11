"""hfgen's licence: the Apache-2.0 text, the package metadata, and the ``license:`` field of every card hfgen writes
(its own for models trained here, the upstream checkpoint's for converted ones)."""

from importlib import metadata
from pathlib import Path

import pytest
import yaml

from hfgen.convert._common import conversion_card
from hfgen.hub import render_model_card
from hfgen.registry import list_methods

ROOT = Path(__file__).resolve().parent.parent


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_license_file_and_package_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    meta = metadata.metadata("hfgen")
    assert "Apache-2.0" in (meta.get("License-Expression"), meta.get("License"))


@pytest.mark.parametrize("method", sorted(info.name for info in list_methods()))
def test_every_method_card_carries_hfgens_licence(method):
    assert _front_matter(str(render_model_card(method)))["license"] == "apache-2.0"


def test_converted_cards_carry_the_upstream_licence():
    card = conversion_card("x", "src.pt", "Model", "pass", method="gft", license="cc-by-nc-4.0",
                           license_source="the upstream card")
    assert _front_matter(card)["license"] == "cc-by-nc-4.0" and "(the upstream card)" in card
    plain = conversion_card("x", "src.pt", "Model", "pass", license="creativeml-openrail-m")
    assert _front_matter(plain)["license"] == "creativeml-openrail-m"
