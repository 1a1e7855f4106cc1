"""LeNet-5 trained on real handwritten digits: scikit-learn's bundled 8x8 scans.

`load_digits` ships 1,797 real 8x8 digit scans (UCI optdigits) inside scikit-learn, so no
network is needed. They are scaled to [0, 1] and upsampled to LeNet's 32x32 input. The same
seed gives the same split, the same initial weights and the same batch order for cnnkern's
layers and for plain torch layers, so their loss curves can be compared step by step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from .lenet import lenet5


@dataclass
class TrainResult:
    backend: str
    algo: str
    test_accuracy: float
    seconds: float
    train_loss: List[float] = field(default_factory=list)  # mean loss per epoch
    test_acc: List[float] = field(default_factory=list)    # held-out accuracy per epoch


def load_digits_32(test_fraction: float = 0.2, seed: int = 0
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): (N, 1, 32, 32) float32 in [0, 1], int64 labels.

    A stratified split: each class gets the same share of held-out images.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    y = torch.tensor(data.target, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = round(len(idx) * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr, te = torch.cat(train_idx), torch.cat(test_idx)
    return x[tr], y[tr], x[te], y[te]


def accuracy(model, x, y, batch: int = 512) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                      for i in range(0, len(x), batch))
    return correct / len(x)


def train_lenet_digits(backend: str = "cnnkern", algo: str = "auto", epochs: int = 15,
                       batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
                       progress: bool = False) -> TrainResult:
    """Adam on cross-entropy; returns per-epoch loss and held-out accuracy."""
    x_tr, y_tr, x_te, y_te = load_digits_32(seed=seed)
    torch.manual_seed(seed)
    model = lenet5(backend=backend, **({"algo": algo} if backend == "cnnkern" else {}))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order_gen = torch.Generator().manual_seed(seed)
    result = TrainResult(backend, algo if backend == "cnnkern" else "-", 0.0, 0.0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs, desc=f"LeNet-5 on digits ({backend})", unit="epoch")
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=order_gen)
        losses = []
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        result.train_loss.append(sum(losses) / len(losses))
        result.test_acc.append(accuracy(model, x_te, y_te))
        if bar is not None:
            bar.set_postfix(loss=f"{result.train_loss[-1]:.3f}", acc=f"{result.test_acc[-1]:.3f}")
            bar.update()
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - start
    result.test_accuracy = result.test_acc[-1]
    return result


def plot_training(results: List[TrainResult], path: str, title: Optional[str] = None) -> None:
    """Loss and held-out accuracy per epoch, one line per run, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    styles = [dict(marker="o", linestyle="-"), dict(marker="x", linestyle="--")]
    for i, r in enumerate(results):  # distinct styles: the curves may lie on top of each other
        label = f"{r.backend}" + (f" ({r.algo})" if r.backend == "cnnkern" else "")
        epochs = range(1, len(r.train_loss) + 1)
        style = styles[i % len(styles)]
        ax_loss.plot(epochs, r.train_loss, label=label, **style)
        ax_acc.plot(epochs, r.test_acc, label=label, **style)
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="held-out accuracy", ylim=(0.5, 1.0))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "LeNet-5 on scikit-learn's digits (8x8 scans upsampled to 32x32)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
