"""GCN-V training checkpoints (resume bit for bit), early stopping, and the released weights."""

import logging

import numpy as np
import pytest
import torch
from _problems import blobs

from facecluster.io import InputError
from facecluster.knn import brute_force_knn
from facecluster.methods import Context, gcnv
from facecluster.nn import checkpoint
from facecluster.nn import gcnv as impl

FAST = {"hidden": 8, "epochs": 40, "lr": 0.1, "checkpoint_every": 6}
EARLY = {"val_fraction": 0.3, "patience": 2, "eval_every": 4}


class Killed(Exception):
    """Stands for the job being killed."""


@pytest.fixture(scope="module")
def problem():
    feats, labels = blobs(n=120, groups=6, dim=16, seed=1)
    return feats, labels, brute_force_knn(feats, 8)


def _ctx(path=None, seed=5):
    return Context(
        seed=seed, threads=1, device="cpu", checkpoint=None if path is None else str(path)
    )


def _train(problem, path=None, **params):
    feats, labels, knn = problem
    return gcnv.train(feats, labels, knn, context=_ctx(path), **{**FAST, **params})


def _assert_same_model(a, b):
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name
    assert {k: v for k, v in a.items() if k != "state_dict"} == {
        k: v for k, v in b.items() if k != "state_dict"
    }


def _kill_after_save(monkeypatch, at: int):
    """Make the checkpoint written after ``at`` iterations the last thing the job does."""
    real = checkpoint.save

    def save(path, fp, iteration, *args, **kwargs):
        real(path, fp, iteration, *args, **kwargs)
        if iteration == at:
            raise Killed(iteration)

    monkeypatch.setattr(checkpoint, "save", save)


@pytest.mark.parametrize("params", [{}, EARLY], ids=["plain", "early_stopping"])
def test_killed_then_resumed_equals_uninterrupted(problem, tmp_path, monkeypatch, caplog, params):
    whole = _train(problem, **params)
    path = tmp_path / "m.pt.ckpt"
    with monkeypatch.context() as m:
        _kill_after_save(m, 18)
        with pytest.raises(Killed):
            _train(problem, path, **params)
    assert path.exists()
    with caplog.at_level(logging.INFO, logger="facecluster.nn.checkpoint"):
        resumed = _train(problem, path, **params)
    assert "resuming from iteration 18" in caplog.text
    _assert_same_model(whole, resumed)


def test_checkpointing_does_not_change_the_result(problem, tmp_path):
    _assert_same_model(_train(problem), _train(problem, tmp_path / "c.ckpt"))
    assert (tmp_path / "c.ckpt").exists()  # the task deletes it after writing the model
    _train(problem, tmp_path / "never.ckpt", checkpoint_every=0)
    assert not (tmp_path / "never.ckpt").exists()


def test_kill_during_a_save_keeps_the_previous_checkpoint(problem, tmp_path, monkeypatch):
    whole = _train(problem)
    path = tmp_path / "m.ckpt"
    real = torch.save
    calls = []

    def save(obj, f, *a, **kw):
        calls.append(obj["iteration"])
        if obj["iteration"] == 12:
            with open(f, "wb") as fh:
                fh.write(b"half a checkpoint")
            raise Killed(12)
        real(obj, f, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(checkpoint.torch, "save", save)
        with pytest.raises(Killed):
            _train(problem, path)
    assert calls == [6, 12]
    assert torch.load(path, weights_only=True)["iteration"] == 6
    assert not list(tmp_path.glob(".*.tmp"))  # the partial file is gone
    _assert_same_model(whole, _train(problem, path))


def test_checkpoint_of_other_settings_or_data_is_ignored(problem, tmp_path, monkeypatch, caplog):
    path = tmp_path / "m.ckpt"
    with monkeypatch.context() as m:
        _kill_after_save(m, 18)
        with pytest.raises(Killed):
            _train(problem, path, lr=0.05)
    with caplog.at_level(logging.WARNING):
        other = _train(problem, path)
    assert "another training" in caplog.text and "lr (0.05 there, 0.1 now)" in caplog.text
    _assert_same_model(other, _train(problem))

    path = tmp_path / "data.ckpt"
    with monkeypatch.context() as m:
        _kill_after_save(m, 18)
        with pytest.raises(Killed):
            _train(problem, path)
    feats, labels, knn = problem
    moved = feats.copy()
    moved[0] = moved[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        got = gcnv.train(moved, labels, knn, context=_ctx(path), **FAST)
    assert "data.features" in caplog.text
    _assert_same_model(got, gcnv.train(moved, labels, knn, context=_ctx(), **FAST))


@pytest.mark.parametrize(
    "content",
    [b"", b"not a torch file at all", "torch-other"],
    ids=["empty", "garbage", "other_torch_file"],
)
def test_corrupt_checkpoint_is_ignored_with_a_warning(problem, tmp_path, caplog, content):
    path = tmp_path / "m.ckpt"
    if content == "torch-other":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    else:
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        got = _train(problem, path)
    assert "ignored, training from scratch" in caplog.text
    _assert_same_model(got, _train(problem))
    assert torch.load(path, weights_only=True)["format"] == checkpoint.FORMAT  # replaced


def test_validation_mask_holds_out_seeded_identities():
    labels = np.repeat(np.arange(10), 3)
    labels[:2] = -1
    a = impl.validation_mask(labels, 0.3, seed=1)
    assert np.array_equal(a, impl.validation_mask(labels, 0.3, seed=1))
    assert np.unique(labels[a]).size == 3 and not a[:2].any()
    assert not np.isin(labels[~a], labels[a]).any()  # whole identities
    assert impl.validation_mask(labels, 0.99, seed=1).sum() < labels.size  # one stays
    with pytest.raises(ValueError, match="2 identities"):
        impl.validation_mask(np.zeros(5, int), 0.5, seed=0)


def test_early_stopping_keeps_the_best_weights(problem):
    feats, labels, knn = problem
    params = {**FAST, "epochs": 3000, "lr": 0.5, **EARLY}
    model = gcnv.train(feats, labels, knn, context=_ctx(), **params)
    assert model["stopped_at"] < params["epochs"]
    assert model["stopped_at"] - model["best_iteration"] == EARLY["patience"] * EARLY["eval_every"]
    assert model["best_iteration"] % EARLY["eval_every"] == 0
    # the returned weights are those that scored val_loss on the held-out nodes
    held = impl.validation_mask(labels, EARLY["val_fraction"], seed=5)
    conf, _ = gcnv.predict(feats, knn, model, context=_ctx())
    target = gcnv.s_nbr_confidence(knn, labels)
    val = float(np.mean((conf[held] - target[held]) ** 2))
    assert val == pytest.approx(model["val_loss"], rel=1e-5)
    # without early stopping: the full schedule, and none of its keys
    plain = gcnv.train(feats, labels, knn, context=_ctx(), **FAST)
    assert plain["stopped_at"] == FAST["epochs"] and "val_loss" not in plain


def test_estimate_follows_the_schedule():
    spec = gcnv.SPEC
    base = spec.cost(10_000, 256, 80, params={}, train_params={}, train=True, threads=4)
    half = spec.cost(
        10_000, 256, 80, params={}, train_params={"epochs": 40000}, train=True, threads=4
    )
    assert half.seconds == pytest.approx(base.seconds / 2)
    early = spec.cost(
        10_000, 256, 80, params={}, train_params={"val_fraction": 0.2}, train=True, threads=4
    )
    assert base.seconds < early.seconds < 1.01 * base.seconds
    assert early.memory_bytes > base.memory_bytes


# ----------------------------------------------------------------------- released weights


def _reference_checkpoint(model: dict, path, prefix="module.base.", **changes):
    """``model`` saved under learn-to-cluster's GCN_V names, as mmcv saves it."""
    ours = model["state_dict"]
    ref = {
        "conv1.weight": ours["conv.linear.weight"].t().contiguous(),
        "conv1.bias": ours["conv.linear.bias"],
        "classifier.0.weight": ours["head.0.weight"],
        "classifier.0.bias": ours["head.0.bias"],
        "classifier.1.weight": ours["head.1.weight"],
        "classifier.2.weight": ours["head.2.weight"],
        "classifier.2.bias": ours["head.2.bias"],
    }
    ref.update(changes)
    state = {prefix + k: v for k, v in ref.items()}
    torch.save({"meta": {"epoch": 80000}, "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def trained(problem):
    return _train(problem, epochs=10)


def test_released_weights_predict_like_the_source_model(problem, trained, tmp_path):
    feats, _, knn = problem
    path = _reference_checkpoint(trained, tmp_path / "pretrained_gcn_v_ms1m.pth")
    loaded = gcnv.load_pretrained({"model": str(path)})
    assert loaded["family"] == "gcnv" and loaded["th_sim"] == 0.0
    assert (loaded["in_dim"], loaded["hidden"]) == (16, 8)
    for name, value in trained["state_dict"].items():
        assert torch.equal(value, loaded["state_dict"][name]), name
    want = gcnv.predict(feats, knn, trained, context=_ctx())
    got = gcnv.predict(feats, knn, loaded, context=_ctx())
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)
    # a model file like a trained one: saved and re-read with weights_only
    torch.save(loaded, tmp_path / "model.pt")
    again = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(trained) - {"stopped_at"} <= set(again)


def test_released_weights_without_prefix_load(trained, tmp_path):
    path = _reference_checkpoint(trained, tmp_path / "plain.pth", prefix="")
    assert gcnv.load_pretrained({"model": str(path)})["hidden"] == 8


def test_released_weights_unknown_name_is_named(trained, tmp_path):
    path = _reference_checkpoint(
        trained, tmp_path / "x.pth", **{"classifier.3.weight": torch.zeros(1)}
    )
    with pytest.raises(InputError, match=r"do not map: module\.base\.classifier\.3\.weight"):
        gcnv.load_pretrained({"model": str(path)})


def test_released_weights_wrong_shape_is_named(trained, tmp_path):
    path = _reference_checkpoint(
        trained, tmp_path / "x.pth", **{"classifier.0.weight": torch.zeros(8, 9)}
    )
    with pytest.raises(
        InputError, match=r"shapes that differ: module\.base\.classifier\.0\.weight"
    ):
        gcnv.load_pretrained({"model": str(path)})
    path = _reference_checkpoint(trained, tmp_path / "y.pth", **{"conv1.weight": torch.zeros(5, 8)})
    with pytest.raises(InputError, match=r"conv1\.weight of shape"):
        gcnv.load_pretrained({"model": str(path)})


def test_released_weights_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="'model' entry"):
        gcnv.load_pretrained({"weights": "x.pth"})
    (tmp_path / "bad.pth").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.pth: not a readable"):
        gcnv.load_pretrained({"model": str(tmp_path / "bad.pth")})
