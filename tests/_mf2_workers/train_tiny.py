"""Train a tiny MF^2 for a few steps in a fresh process and save its weights (used by the determinism test).

    python tests/_mf2_workers/train_tiny.py OUT_DIR
"""

import sys

import torch

from hfgen.data.faces import build_face_tokenizer, make_synthetic_faces
from hfgen.demos.mf2 import pretrain, tiny_mf2_config

if __name__ == "__main__":
    torch.set_num_threads(1)
    tok = build_face_tokenizer()
    faces = make_synthetic_faces(48, image_size=16, seed=0)
    config = tiny_mf2_config(tok, image_size=16, width=16, layers=2)
    model = pretrain(faces, tok, sys.argv[1], max_steps=3, batch_size=16, config=config, seed=0, progress_bar=False)
    model.save_pretrained(sys.argv[1])
