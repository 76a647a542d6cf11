"""`hfgen info <method>` prints the method's card template, as the README says ("paper, components, card template")."""

import pytest

from hfgen.cli import main
from hfgen.hub import render_model_card


@pytest.mark.parametrize("method", ["nft", "gft", "iisan"])
def test_info_prints_the_rendered_card_template(method, capsys):
    assert main(["info", method]) == 0
    out = capsys.readouterr().out
    card = str(render_model_card(method, model_name=f"my-{method}-model"))
    assert card.strip() in out
    assert f"hfgen_method: {method}" in out and "## How to use" in out and "## Citation" in out
