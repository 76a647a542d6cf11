"""``hfgen push`` uploads only regular files inside the folder and never a pickle (issue #25, item 8), against the
loopback Hub ([`hfgen.testing.fake_hub`]) through the real ``huggingface_hub`` client.

As reported in the issue, before the fix ``upload_folder`` followed a symlink to a file outside the folder (uploading its target) and
uploaded the pickles inside ``checkpoint-*/`` (``optimizer.pt``, ``rng_state.pth``, ...).
"""

from __future__ import annotations

import pickle

import torch
from test_reliability_saving import same, sasrec, weights_of

import hfgen


def test_push_uploads_only_regular_files_inside_the_folder_and_no_pickle(tmp_path, fake_hub):
    folder = tmp_path / "model"
    model = sasrec(0)
    model.save_pretrained(folder)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("never published")
    (folder / "notes.txt").symlink_to(secret)  # a symlink to a file outside the folder
    (folder / "linked_dir").symlink_to(secret.parent, target_is_directory=True)  # and to a folder outside it
    checkpoint = folder / "checkpoint-1"
    model.save_pretrained(checkpoint)
    torch.save({"state": {}}, checkpoint / "optimizer.pt")
    torch.save({"cpu": torch.get_rng_state()}, checkpoint / "rng_state.pth")
    (checkpoint / "nested").mkdir()
    (checkpoint / "nested" / "extra.pkl").write_bytes(pickle.dumps({"x": 1}))
    (checkpoint / "nested" / "disguised.dat").write_bytes(pickle.dumps([1, 2]))  # a pickle under another name
    (checkpoint / "nested" / "plain.txt").write_text("kept")
    (folder / ".hfgen-tmp-deadbeef-1-x").mkdir()  # a killed save's leftovers
    (folder / ".hfgen-tmp-deadbeef-1-x" / "model.safetensors").write_bytes(b"partial")

    hfgen.push(folder, "hfgen-ci/push-hostile")
    uploaded = set(fake_hub.repos[("model", "hfgen-ci/push-hostile")].head[1])
    print(sorted(uploaded))
    assert "model.safetensors" in uploaded and "config.json" in uploaded
    assert "checkpoint-1/model.safetensors" in uploaded and "checkpoint-1/nested/plain.txt" in uploaded
    forbidden = {"notes.txt", "linked_dir/secret.txt", "checkpoint-1/optimizer.pt", "checkpoint-1/rng_state.pth",
                 "checkpoint-1/nested/extra.pkl", "checkpoint-1/nested/disguised.dat"}
    assert not uploaded & forbidden, uploaded & forbidden
    assert not any(".hfgen-tmp" in name for name in uploaded)
    assert all(b"never published" not in data for data in fake_hub.repos[("model", "hfgen-ci/push-hostile")].head[1].values())
    assert same(weights_of(hfgen.load("hfgen-ci/push-hostile")), weights_of(model))
