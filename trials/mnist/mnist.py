"""The CNN of NNI's MNIST example, as a remotetune trial.

Two convolution layers, each followed by 2x2 max pooling, one fully connected hidden layer with
dropout, and a 10-way output. Tuned hyperparameters (NNI's names): ``lr``, ``dropout_rate``,
``conv_size`` (the convolution kernel size), ``channels`` (the first convolution's channels; the
second has twice as many), ``hidden_size``, ``batch_size`` and ``momentum`` (SGD).

One model and one training loop, two data sources (``--dataset``):

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline); a fixed,
  stratified 80/20 train/validation split. The convolutions pad to keep their input's size, so
  the same network takes 8x8 and 28x28 images.
* ``mnist``: torchvision's MNIST (28x28), downloaded on first use into ``--data-dir``
  (default ``$REMOTETUNE_DATA_DIR`` or ``~/.cache/remotetune/mnist``); 10,000 of the 60,000
  training images, fixed by seed, are held out for validation.

It reports the validation accuracy (a number in [0, 1]) after every epoch through
``remotetune.trial`` and, at the end, ``{"default": accuracy, "loss": validation loss}``.
Run by hand (no ``REMOTETUNE_*`` environment) it trains with its defaults and prints the result.

This file holds the command line, the hyperparameters and the trial API, and imports nothing
heavy; the network, the data and the training loop are in ``mnist_model.py`` (torch).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

DATASETS = ("digits", "mnist")
DEFAULT_EPOCHS = {"digits": 12, "mnist": 5}
DEFAULT_DATA_DIR = Path("~/.cache/remotetune/mnist")
DATA_DIR_ENV = "REMOTETUNE_DATA_DIR"


@dataclass(frozen=True)
class Hyperparameters:
    """What the tuner chooses. Defaults are used for anything the tuner does not set."""

    lr: float = 0.05
    dropout_rate: float = 0.3
    conv_size: int = 5
    channels: int = 32
    hidden_size: int = 256
    batch_size: int = 32
    momentum: float = 0.9
    epochs: int = 0  # 0: the dataset's default (DEFAULT_EPOCHS)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def merged(self, params: Mapping[str, Any]) -> Hyperparameters:
        """A copy with the tuner's ``params`` applied; raises ``ValueError`` for bad ones."""
        unknown = sorted(set(params) - set(self.names()))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(unknown)}; this trial understands "
                f"{', '.join(self.names())} (rename them in the search space)"
            )
        updates: dict[str, Any] = {}
        for f in fields(self):
            if f.name not in params:
                continue
            value = params[f.name]
            want = type(getattr(self, f.name))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"hyperparameter {f.name} must be a number, got {value!r}")
            if want is int:
                if float(value) != round(float(value)):
                    raise ValueError(f"hyperparameter {f.name} must be a whole number, got {value}")
                value = int(round(float(value)))
            updates[f.name] = want(value)
        merged = replace(self, **updates)
        merged.check()
        return merged

    def check(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        for name in ("conv_size", "channels", "hidden_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be 0 (the dataset's default) or more, got {self.epochs}")


def _trial_api() -> Any:
    """``remotetune.trial``; from a source checkout when remotetune is not installed.

    Run by hand with neither, a stand-in returns no parameters and drops the reports.
    """
    try:
        from remotetune import trial
    except ImportError:
        parents = Path(__file__).resolve().parents
        checkout = parents[2] if len(parents) > 2 else parents[-1]
        if (checkout / "remotetune" / "trial.py").is_file():
            sys.path.insert(0, str(checkout))
            from remotetune import trial
        elif any(key.startswith("REMOTETUNE_") for key in os.environ):
            raise
        else:
            return _Standalone()
    return trial


class _Standalone:
    """Stand-in for ``remotetune.trial`` when it is not importable and no trial is running."""

    @staticmethod
    def get_next_parameter() -> dict[str, Any]:
        return {}

    @staticmethod
    def report_intermediate_result(value: Any) -> None:
        pass

    @staticmethod
    def report_final_result(value: Any) -> None:
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the MNIST example CNN with the tuner's hyperparameters "
        "(or these defaults when run by hand) and report the validation accuracy.",
    )
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="digits: scikit-learn's bundled 8x8 digits (offline, default); "
                        "mnist: torchvision's MNIST (downloaded on first use)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"where MNIST is kept (default ${DATA_DIR_ENV} or {DEFAULT_DATA_DIR})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs to train (default: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items())
                        + "); an 'epochs' hyperparameter from the tuner wins")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default $OMP_NUM_THREADS or 1: trials run "
                        "side by side)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when a GPU is visible (CUDA_VISIBLE_DEVICES), else cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and batch order")
    for name in Hyperparameters.names():
        if name == "epochs":
            continue
        default = getattr(Hyperparameters(), name)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(default),
                            default=default, help=f"default {default}; the tuner's value wins")
    return parser.parse_args(argv)


def fail(message: str) -> NoReturn:
    print(f"mnist.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _load_model() -> ModuleType:
    """``mnist_model`` (next to this file), which imports torch; a clear error without it."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        import mnist_model
    except ImportError as exc:
        fail(
            f"this trial needs PyTorch and scikit-learn ({exc}); install them on this host with "
            "`pip install torch torchvision scikit-learn` (or `pip install 'remotetune[trials]'`)"
        )
    return mnist_model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    api = _trial_api()
    params = api.get_next_parameter() or {}
    defaults = Hyperparameters(
        epochs=args.epochs or 0,
        **{name: getattr(args, name) for name in Hyperparameters.names() if name != "epochs"},
    )
    try:
        defaults.check()
        hp = defaults.merged(params)
    except ValueError as exc:
        fail(str(exc))
    epochs = hp.epochs or DEFAULT_EPOCHS[args.dataset]
    data_dir = args.data_dir or Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS") or 1)

    model = _load_model()  # torch loads here, once the parameters are known to be good
    model.set_threads(threads)
    try:
        device = model.pick_device(args.device)
        if args.dataset == "digits":
            data = model.load_digits()
        else:
            data = model.load_mnist(data_dir.expanduser())
    except model.DataUnavailable as exc:
        fail(str(exc))
    print(f"dataset {args.dataset}: {len(data.train_y)} train / {len(data.valid_y)} validation "
          f"images of {data.image_size}x{data.image_size}; device {device}, {threads} thread(s); "
          f"{hp}", flush=True)

    def on_epoch(r: Any) -> None:
        print(f"epoch {r.epoch}/{epochs}: train loss {r.train_loss:.4f}, validation loss "
              f"{r.valid_loss:.4f}, accuracy {r.accuracy:.4f} ({r.seconds:.1f} s)", flush=True)
        api.report_intermediate_result(r.accuracy)

    result = model.train(hp, data, epochs, device, seed=args.seed, on_epoch=on_epoch)
    loss = result.valid_loss if math.isfinite(result.valid_loss) else 1e9
    api.report_final_result({"default": result.accuracy, "loss": loss})
    print(f"final validation accuracy {result.accuracy:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
