"""Synthetic faces, real-layout loaders, face metrics and the MF^2 trainer / registry entry."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hfgen.data import faces as F
from hfgen.metrics.face import au_f1, au_f1_module_path, emotion_accuracy, emotion_accuracy_module_path

# ------------------------------------------------------------------------------ synthetic faces


@pytest.mark.parametrize("emotion", F.EMOTIONS)
def test_each_emfacs_prototype_is_read_as_its_emotion(emotion):
    assert F.emotion_from_aus(F.EMOTION_PROTOTYPES[emotion]) == emotion


def test_emotion_rule_uses_jaccard_overlap_with_a_threshold():
    assert F.emotion_from_aus({"AU1", "AU2", "AU4", "AU5", "AU26"}) == "fear"  # 5/6 fear beats 4/5 surprise
    assert F.emotion_from_aus({"AU20"}) == "neutral"  # best overlap 1/6 < 0.5
    assert F.emotion_from_aus({"AU12"}) == "happy"  # 1/2: a lone lip-corner pull is a smile


def test_synthetic_faces_are_deterministic_and_labels_consistent():
    a, b = F.make_synthetic_faces(20, image_size=24, seed=7), F.make_synthetic_faces(20, image_size=24, seed=7)
    assert np.array_equal(a.images, b.images) and a.images.shape == (20, 24, 24, 3)
    for i in range(20):
        active = [au for au, on in zip(a.au_names, a.au_labels[i]) if on]
        assert F.EMOTIONS[a.emotions[i]] == F.emotion_from_aus(active)
        item = a[i]
        assert item["global_text"] == F.emotion_description(F.EMOTIONS[a.emotions[i]])
        assert [("is present" in t) for t in item["au_texts"]] == [bool(x) for x in a.au_labels[i]]
    assert not np.array_equal(a.images, F.make_synthetic_faces(20, image_size=24, seed=8).images)


def test_drawn_au_changes_the_image_only_where_it_acts():
    base = F.render_face({}, np.random.default_rng(0), 48)
    smile = F.render_face({"AU12": 1.0}, np.random.default_rng(0), 48)
    diff = np.abs(base.astype(int) - smile.astype(int)).sum(-1) > 40
    rows = np.nonzero(diff.any(1))[0]
    assert diff.any() and rows.min() > 48 // 2  # the lip corners are in the lower half of the face


def test_tokenizer_covers_every_template_without_unknown_words():
    tok = F.build_face_tokenizer()
    texts = F.emotion_prompts() + sum(F.au_prompts(), [])
    ids = tok(texts)["input_ids"]
    assert all(tok.unk_token_id not in row and row[0] == tok.cls_token_id and row[-1] == tok.sep_token_id
               for row in ids)


# -------------------------------------------------------------------------------------- loaders


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def test_disfa_layout_thresholds_intensity(tmp_path):
    lab = tmp_path / "ActionUnit_Labels" / "SN001"
    lab.mkdir(parents=True)
    for au, values in {"au1": [0, 2], "au12": [3, 1]}.items():
        (lab / f"SN001_{au}.txt").write_text("".join(f"{i + 1},{v}\n" for i, v in enumerate(values)))
    for i in (1, 2):
        _img(tmp_path / "Images" / "SN001" / f"{i:05d}.jpg")
    ds = F.load_disfa(tmp_path, au_names=["AU1", "AU12"])
    assert ds["au_labels"] == [[0.0, 1.0], [1.0, 0.0]] and ds["frame"] == [1, 2]
    with pytest.raises(FileNotFoundError, match="AU2"):
        F.load_disfa(tmp_path, au_names=["AU2"])


def test_bp4d_layout_skips_unknown_labels(tmp_path):
    occ = tmp_path / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True)
    (occ / "F001_T1.csv").write_text("Frame,1,2,12\n1,1,0,1\n2,9,0,0\n3,0,1,0\n")
    for i in (1, 2, 3):
        _img(tmp_path / "2DFaces" / "F001" / "T1" / f"{i:04d}.jpg")
    ds = F.load_bp4d(tmp_path, au_names=["AU1", "AU12"])
    assert ds["frame"] == [1, 3] and ds["au_labels"] == [[1.0, 1.0], [0.0, 0.0]] and ds["task"] == ["T1", "T1"]


def test_rafdb_and_affectnet_layouts(tmp_path):
    (tmp_path / "raf" / "EmoLabel").mkdir(parents=True)
    (tmp_path / "raf" / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\ntest_0001.jpg 7\n")
    _img(tmp_path / "raf" / "Image" / "aligned" / "train_00001_aligned.jpg")
    _img(tmp_path / "raf" / "Image" / "aligned" / "test_0001_aligned.jpg")
    assert F.load_rafdb(tmp_path / "raf", "train")["emotion"] == ["happy"]
    assert F.load_rafdb(tmp_path / "raf", "test")["emotion"] == ["neutral"]
    aff = tmp_path / "aff"
    aff.mkdir()
    (aff / "validation.csv").write_text("subDirectory_filePath,expression\n1/a.jpg,6\n1/b.jpg,7\n1/c.jpg,9\n")
    for n in "abc":
        _img(aff / "Manually_Annotated_Images" / "1" / f"{n}.jpg")
    assert F.load_affectnet(aff)["emotion"] == ["angry"]
    assert F.load_affectnet(aff, num_classes=8)["emotion"] == ["angry", "contempt"]
    with pytest.raises(ValueError, match="split"):
        F.load_rafdb(tmp_path / "raf", "val")


def test_mfa_json_layout(tmp_path):
    _img(tmp_path / "img" / "0.jpg")
    rec = {"image": "img/0.jpg", "global_description": "the face looks happy",
           "au_descriptions": {"AU6": "cheeks raised", "AU12": "lip corners up"}, "aus": {"AU6": 1, "AU12": 1},
           "emotion": "happy"}
    (tmp_path / "mfa.json").write_text(json.dumps([rec]))
    ds = F.load_mfa_json(tmp_path / "mfa.json")
    assert ds["au_texts"] == [["cheeks raised", "lip corners up"]] and ds["au_labels"] == [[1.0, 1.0]]
    (tmp_path / "bad.jsonl").write_text(json.dumps({**rec, "au_descriptions": {"AU6": "x"}}) + "\n")
    with pytest.raises(ValueError, match="AU12"):
        F.load_mfa_json(tmp_path / "bad.jsonl", au_names=["AU6", "AU12"])


def test_pixel_values_refuse_non_rgb_without_resize():
    with pytest.raises(ValueError, match="RGB"):
        F.pixel_values_from_images(np.zeros((2, 8, 8), np.uint8))
    gray = [Image.fromarray(np.zeros((10, 12), np.uint8))]
    assert F.pixel_values_from_images(gray, image_size=16).shape == (1, 3, 16, 16)


# -------------------------------------------------------------------------------------- metrics


def test_au_f1_by_hand_and_through_evaluate_by_path():
    import evaluate

    pred = [[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 1]]
    ref = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]]
    # AU0: tp=2 fp=1 fn=0 -> 4/5; AU1: tp=1 -> 1; AU2: tp=1 fp=1 fn=1 -> 1/2
    out = au_f1(pred, ref, au_names=["AU1", "AU2", "AU4"])
    assert out["f1_AU1"] == pytest.approx(0.8) and out["f1_AU4"] == pytest.approx(0.5)
    assert out["mean_f1"] == pytest.approx((0.8 + 1 + 0.5) / 3)
    from sklearn.metrics import f1_score

    assert out["mean_f1"] == pytest.approx(f1_score(np.array(ref), np.array(pred), average="macro"))
    module = evaluate.load(au_f1_module_path())
    assert module.compute(predictions=pred, references=ref, au_names=["AU1", "AU2", "AU4"]) == pytest.approx(out)
    assert au_f1(np.array(pred) * 4 - 2, ref, threshold=0.0)["mean_f1"] == pytest.approx(out["mean_f1"])
    with pytest.raises(ValueError, match="same shape"):
        au_f1(pred, [r[:2] for r in ref])


def test_emotion_accuracy_by_hand_and_through_evaluate_by_path():
    import evaluate

    assert emotion_accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 0, 0]) == pytest.approx(2 / 3)
    module = evaluate.load(emotion_accuracy_module_path())
    assert module.compute(predictions=[0, 2, 1], references=[0, 2, 2])["accuracy"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- trainer & registry


def test_trainer_trains_logs_both_levels_and_saves_an_hfgen_card(tmp_path):
    from transformers import AutoModel

    from hfgen.demos.mf2 import pretrain, tiny_mf2_config

    tok = F.build_face_tokenizer()
    faces = F.make_synthetic_faces(32, image_size=16, seed=0)
    cfg = tiny_mf2_config(tok, image_size=16, width=16, layers=1)
    model = pretrain(faces, tok, tmp_path / "run", max_steps=2, batch_size=8, config=cfg, progress_bar=False)
    from hfgen.trainers.mf2 import MF2Trainer, MF2TrainingConfig

    trainer = MF2Trainer(model=model, args=MF2TrainingConfig(str(tmp_path / "out"), max_steps=1,
                                                            per_device_train_batch_size=8, logging_steps=1,
                                                            use_cpu=True),
                         train_dataset=faces, processing_class=tok)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert {"loss_global", "loss_local", "logit_scale"} <= set(logged)
    trainer.save_model()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "library_name: hfgen" in card and "2504.10351" in card and "zero_shot_emotion_logits" in card
    assert isinstance(AutoModel.from_pretrained(tmp_path / "out"), type(model))


@pytest.mark.parametrize("kwargs,match", [(dict(local_loss_weight=-1.0), "local_loss_weight"),
                                          (dict(global_loss_weight=0.0, local_loss_weight=0.0), "both 0")])
def test_bad_training_config_is_refused(tmp_path, kwargs, match):
    from hfgen.trainers.mf2 import MF2TrainingConfig

    with pytest.raises(ValueError, match=match):
        MF2TrainingConfig(str(tmp_path), **kwargs)


def test_registry_entry_resolves_every_component():
    import hfgen

    info = hfgen.get_method("mf2")
    for name in info.components:
        obj = info.load_component(name)
        assert getattr(obj, "__name__", name) == name
    assert info.load_demo().__name__ == "run"


def test_zero_shot_emotion_is_well_above_chance_after_pretraining(tmp_path):
    from hfgen.demos.mf2 import pretrain, tiny_mf2_config, zero_shot_scores

    tok = F.build_face_tokenizer()
    train, test = F.make_synthetic_faces(600, image_size=32, seed=0), F.make_synthetic_faces(200, image_size=32, seed=1)
    cfg = tiny_mf2_config(tok, image_size=32, width=32, layers=2)
    model = pretrain(train, tok, tmp_path, max_steps=300, batch_size=32, config=cfg, progress_bar=False)
    scores = zero_shot_scores(model, tok, test)
    majority = np.bincount(test.emotions).max() / len(test)
    assert scores["emotion_accuracy"] > max(2 / len(F.EMOTIONS), majority + 0.1)
    assert torch.isfinite(torch.tensor(scores["mean_f1"]))


def test_face_au_script_smoke(tmp_path, load_script):
    from hfgen.results import check_arms, read_record

    rows, zero_shot, paths = load_script("face_au").main(
        steps=2, adapt_steps=2, n_pretrain=32, n_adapt=32, n_test=16, seeds=(0, 1), out_png=tmp_path / "r.png",
        output_dir=tmp_path / "runs", raw_dir=tmp_path / "raw")
    assert {r["method"] for r in rows} == {"linear probe", "DFN", "full fine-tuning"} and len(rows) == 12
    by = {(r["pretraining"], r["method"]): r for r in rows if r["seed"] == 0}
    # the trainable parameter counts order as the method claims: probe < DFN < full fine-tuning
    assert by["global+local", "linear probe"]["trainable_params"] < by["global+local", "DFN"]["trainable_params"] \
        < by["global+local", "full fine-tuning"]["trainable_params"]
    zero, adapted = (read_record(p) for p in paths)
    check_arms(zero, ["global-only", "global+local"], ["mean_f1", "emotion_accuracy"])
    arms = [f"{pre} / {m}" for pre in ("global-only", "global+local") for m in ("linear probe", "DFN", "full fine-tuning")]
    check_arms(adapted, arms, ["mean_au_f1", "emotion_accuracy", "trainable_params", "seconds"])
    assert zero["seeds"] == adapted["seeds"] == [0, 1] and zero["settings"]["claim"]["arm"] == "global+local"
    assert str(tmp_path / "r.png") in adapted["figures"] and (tmp_path / "r.png").is_file()


def test_same_seed_gives_bitwise_equal_weights_in_fresh_processes_with_different_hash_seeds(tmp_path):
    """Issue 25 item 3: two fresh processes with the same seed but different ``PYTHONHASHSEED`` train the same model.

    Each leg runs in its own interpreter (no shared warm parent). On the old data code, which assigned the AU
    intensities in the iteration order of a ``set`` of AU names, every weight differed (checked by restoring
    that loop: "87 of 87 tensors differ").
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    worker = Path(__file__).parent / "_mf2_workers" / "train_tiny.py"
    weights = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"hash{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, str(worker), str(out)], check=True, env=env, timeout=300)
        weights.append(load_file(out / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    different = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not different, f"{len(different)} of {len(weights[0])} tensors differ, e.g. {different[:3]}"


def test_subject_exclusive_folds_put_each_subject_in_one_test_fold():
    rng = np.random.default_rng(0)
    subjects = [f"F{s:03d}" for s in rng.integers(0, 41, 2000)]  # BP4D-like: 41 subjects, uneven frame counts
    folds = F.subject_exclusive_folds(subjects, n_folds=3)
    assert len(folds) == 3
    arr = np.array(subjects)
    test_sets = [set(arr[test]) for _, test in folds]
    for (train, test), test_subjects in zip(folds, test_sets):
        assert not set(arr[train]) & test_subjects  # no subject on both sides of a fold
        assert sorted(np.concatenate([train, test])) == list(range(len(subjects)))
    assert sum(len(s) for s in test_sets) == len(set(subjects))  # each subject in exactly one test fold
    all_test = np.concatenate([t for _, t in folds])
    assert sorted(all_test) == list(range(len(subjects)))  # each frame tested once
    sizes = [len(t) for _, t in folds]
    assert max(sizes) - min(sizes) <= max(np.unique(arr, return_counts=True)[1])  # balanced up to one subject
    # deterministic, and independent of the frames' order
    perm = rng.permutation(len(subjects))
    again = F.subject_exclusive_folds(arr[perm].tolist(), n_folds=3)
    assert [set(arr[perm][t]) for _, t in again] == test_sets
    shuffled = F.subject_exclusive_folds(subjects, n_folds=3, shuffle=True, seed=1)
    assert all(not set(arr[tr]) & set(arr[te]) for tr, te in shuffled)


def test_subject_exclusive_folds_known_answer_and_bad_input():
    # sizes a:4 b:3 c:2 d:1 -> largest first into the emptiest fold: a->0, b->1, c->1, d->0
    subjects = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"]
    (tr0, te0), (tr1, te1) = F.subject_exclusive_folds(subjects, n_folds=2)
    assert te0.tolist() == [0, 1, 2, 3, 9] and te1.tolist() == [4, 5, 6, 7, 8]
    for kwargs, match in ((dict(n_folds=1), "n_folds"), (dict(n_folds=5), "number of subjects"),
                          (dict(n_folds=True), "n_folds")):
        with pytest.raises(ValueError, match=match):
            F.subject_exclusive_folds(subjects, **kwargs)
    with pytest.raises(ValueError, match="subjects"):
        F.subject_exclusive_folds([], n_folds=2)
