"""LeNet-5 trained on scikit-learn's real handwritten digits (a shorter run than the CLI's)."""

import pytest
import torch

pytest.importorskip("sklearn")

from cnnkern.models.digits import load_digits_32, train_lenet_digits  # noqa: E402


def test_digits_split_is_stratified_and_scaled():
    x_tr, y_tr, x_te, y_te = load_digits_32()
    assert x_tr.shape[1:] == (1, 32, 32) and len(x_tr) + len(x_te) == 1797
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    counts = torch.bincount(y_te, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~20% of each class (174-183 per class)


def test_lenet5_learns_digits_and_tracks_plain_torch():
    ours = train_lenet_digits("cnnkern", epochs=6, seed=0)
    ref = train_lenet_digits("torch", epochs=6, seed=0)
    assert ours.test_accuracy >= 0.95
    # same seed, same batches: the two loss curves agree to float32 rounding
    for a, b in zip(ours.train_loss, ref.train_loss):
        assert abs(a - b) <= 1e-3 * b
    assert abs(ours.test_accuracy - ref.test_accuracy) <= 2 / 360
