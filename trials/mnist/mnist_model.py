"""The model, the data and the training loop of the MNIST example (imports torch).

``mnist.py`` is the trial; it imports this module once the tuner's parameters are known to be
good, so a bad search space fails a trial at once instead of after torch has loaded.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from mnist import Hyperparameters

SPLIT_SEED = 0  # the train/validation split never changes between trials
MNIST_VALIDATION = 10_000  # training images held out for validation (a sixth of a smaller set)


@dataclass(frozen=True)
class Split:
    """Images as float tensors (N, 1, H, W), labels as int64 tensors (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def to(self, device: torch.device) -> Split:
        tensors = (self.train_x, self.train_y, self.valid_x, self.valid_y)
        return Split(*(t.to(device) for t in tensors))


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    valid_loss: float
    accuracy: float
    seconds: float  # since training started


class DataUnavailable(Exception):
    """The data set is neither on disk nor downloadable; the message says what to do."""


class Net(nn.Module):
    """conv -> pool -> conv -> pool -> fc (hidden, dropout) -> fc (10 classes)."""

    def __init__(self, hp: Hyperparameters, image_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, hp.channels, hp.conv_size, padding="same")
        self.conv2 = nn.Conv2d(hp.channels, 2 * hp.channels, hp.conv_size, padding="same")
        side = image_size // 4
        self.fc1 = nn.Linear(2 * hp.channels * side * side, hp.hidden_size)
        self.fc2 = nn.Linear(hp.hidden_size, 10)
        self.dropout = nn.Dropout(hp.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def load_digits() -> Split:
    """scikit-learn's bundled 8x8 digits, normalised; a fixed, stratified 80/20 split.

    The images keep their 8x8: the convolutions pad to keep their input's size, so the two
    2x2 poolings leave 2x2 maps (7x7 for MNIST's 28x28).
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(bunch.target, dtype=torch.int64)
    idx_train, idx_valid = train_test_split(
        list(range(len(y))), test_size=0.2, random_state=SPLIT_SEED, stratify=bunch.target
    )
    return Split(x[idx_train], y[idx_train], x[idx_valid], y[idx_valid])


def load_mnist(data_dir: Path) -> Split:
    """torchvision's MNIST training set, downloaded into ``data_dir`` on first use.

    10,000 of its 60,000 images (a sixth of a smaller set), chosen by a fixed seed, are the
    validation set; the official test set stays unseen by the tuning.
    """
    try:
        from torchvision.datasets import MNIST
    except ImportError as exc:
        raise DataUnavailable(
            f"--dataset mnist needs torchvision ({exc}); `pip install torchvision`, "
            "or use --dataset digits"
        ) from exc
    try:
        dataset = MNIST(str(data_dir), train=True, download=False)
    except RuntimeError:
        try:
            dataset = MNIST(str(data_dir), train=True, download=True)
        except Exception as exc:  # urllib/http/OSError/RuntimeError: torchvision varies
            raise DataUnavailable(
                f"MNIST is not in {data_dir} and downloading it failed ({exc}). Download it "
                f"on a machine with internet (`python3 mnist.py --dataset mnist --epochs 1 "
                f"--data-dir DIR`), copy DIR/MNIST/raw to {data_dir}/MNIST/raw on this host "
                f"(or point --data-dir / REMOTETUNE_DATA_DIR at it), or use --dataset digits"
            ) from exc
    x = dataset.data.to(torch.float32).unsqueeze(1) / 255.0
    x = (x - 0.1307) / 0.3081
    y = dataset.targets.to(torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    held_out = min(MNIST_VALIDATION, len(y) // 6)
    valid, train = order[:held_out], order[held_out:]
    return Split(x[train], y[train], x[valid], y[valid])


def evaluate(
    model: Net, x: torch.Tensor, y: torch.Tensor, batch: int = 1000
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole set."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch):
            out = model(x[start : start + batch])
            target = y[start : start + batch]
            loss_sum += float(F.cross_entropy(out, target, reduction="sum"))
            correct += int((out.argmax(1) == target).sum())
    return loss_sum / len(y), correct / len(y)


def train(
    hp: Hyperparameters,
    data: Split,
    epochs: int,
    device: torch.device,
    seed: int = 0,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> EpochResult:
    """Train a fresh ``Net`` with SGD (momentum, cosine-decayed learning rate) for ``epochs``.

    Returns the last epoch's result; ``on_epoch`` sees every epoch's.
    """
    torch.manual_seed(seed)
    data = data.to(device)
    model = Net(hp, data.image_size).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum)
    # Cosine decay to zero over the run: the last epochs settle instead of bouncing around.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    result = EpochResult(0, math.nan, math.nan, 0.0, 0.0)
    n = len(data.train_y)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum = 0.0
        for start in range(0, n, hp.batch_size):
            idx = order[start : start + hp.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(idx)
        schedule.step()
        valid_loss, accuracy = evaluate(model, data.valid_x, data.valid_y)
        result = EpochResult(
            epoch, loss_sum / n, valid_loss, accuracy, time.monotonic() - started
        )
        if on_epoch is not None:
            on_epoch(result)
        if not math.isfinite(result.train_loss):
            break  # diverged: more epochs will not help, report what we have
    return result


def pick_device(name: str) -> torch.device:
    """``auto``: the first GPU in CUDA_VISIBLE_DEVICES if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataUnavailable(
            "--device cuda but no GPU is visible (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); use --device auto or cpu"
        )
    return torch.device(name)


def set_threads(threads: int) -> None:
    """CPU threads for torch's operators (trials that run side by side want 1 each)."""
    torch.set_num_threads(threads)
