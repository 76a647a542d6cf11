"""Record the official IISAN in-batch loss (GAIR-Lab/IISAN ``Code_Cached/model/model.py``, ``Model.forward``) on
the inputs of ``tests/test_iisan.py::test_slot_loss_equals_the_official_iisan_loss``.

    python scripts/golden/record_iisan.py --checkout /path/to/IISAN [--commit SHA]

``Model.forward`` runs unchanged from the checkout; only its encoders are replaced, by stand-ins written here that
return the recording's fixed embeddings (the golden test compares the loss, not the encoders): the image encoder
returns the items' embeddings, the text encoder zeros, ``com_dense`` keeps the first half of the fused features
(the image half), and the user encoder returns the fixed user states. ``local_rank`` is ``"cpu"``.
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.golden.recorded import write_recording  # noqa: E402
from tests.test_iisan import official_loss_inputs  # noqa: E402


class Returns(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", required=True, help="a checkout of https://github.com/GAIR-Lab/IISAN")
    parser.add_argument("--commit", help="the checkout's commit (when it is an exported snapshot without .git)")
    args = parser.parse_args()
    checkout = Path(args.checkout).resolve()
    if not (checkout / "Code_Cached" / "model" / "model.py").is_file():
        raise SystemExit(f"--checkout: {checkout} has no Code_Cached/model/model.py (not a GAIR-Lab/IISAN checkout)")
    sys.path.insert(0, str(checkout / "Code_Cached"))
    from model.model import Model

    inputs = official_loss_inputs()
    users, slot_embs, ids, pop = inputs["users"], inputs["slot_embs"], inputs["ids"], inputs["pop_prob_list"]
    bs, max_seq_len, dim = users.shape
    users_leaf = users.clone().requires_grad_(True)
    embs_leaf = slot_embs.clone().requires_grad_(True)

    model = Model.__new__(Model)
    torch.nn.Module.__init__(model)
    model.args = argparse.Namespace(embedding_dim=dim)
    model.max_seq_len = max_seq_len
    model.pop_prob_list = pop.float()
    model.criterion = torch.nn.CrossEntropyLoss()
    model.cv_encoder = Returns(lambda images: images)
    model.bert_encoder = Returns(lambda text: torch.zeros_like(text))
    model.com_dense = Returns(lambda fused: fused[:, :dim])
    model.user_encoder = Returns(lambda input_embs, log_mask, local_rank: users_leaf)
    log_mask = (ids[:, :-1] != 0).float()
    loss = model(ids.reshape(-1), embs_leaf, embs_leaf.detach(), log_mask, "cpu")
    grad_users, grad_embs = torch.autograd.grad(loss, [users_leaf, embs_leaf])
    write_recording(
        "iisan", "inbatch_loss", dict(inputs, loss=loss.detach(), grad_users=grad_users, grad_slot_embs=grad_embs),
        repository="https://github.com/GAIR-Lab/IISAN", checkout=checkout, commit=args.commit,
        file="Code_Cached/model/model.py", function="Model.forward (IN-BATCH CROSS-ENTROPY LOSS)",
        seeds={"tests.test_iisan.official_loss_inputs": 0},
        standins="encoders return the fixed inputs: cv_encoder -> slot_embs, bert_encoder -> zeros, "
                 "com_dense -> the image half, user_encoder -> users")


if __name__ == "__main__":
    main()
