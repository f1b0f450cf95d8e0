"""NNI's MNIST example (examples/trials/mnist-pytorch/mnist.py), written the way it is:
argparse defaults, ``nni.get_next_parameter()``, ``nni.utils.merge_parameter``, a report per
epoch and a final one. Only the model and the data differ, so it runs anywhere in a second:
a softmax regression in numpy on fake 8x8 "digits" (no download), trained by SGD with
momentum. Its accuracies are numpy floats, as a numpy or torch trial's often are.
"""

import argparse
import logging

import nni
import numpy as np
from nni.utils import merge_parameter

logger = logging.getLogger("mnist_AutoML")


def fake_digits(rng, count, templates):
    labels = rng.integers(0, 10, size=count)
    images = templates[labels] + rng.normal(0.0, 4.0, size=(count, 64))
    return images, labels


def train(args, weights, velocity, images, labels, rng):
    order = rng.permutation(len(labels))
    for start in range(0, len(order), args["batch_size"]):
        batch = order[start:start + args["batch_size"]]
        logits = images[batch] @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(len(batch)), labels[batch]] -= 1.0
        grad = images[batch].T @ probs / len(batch)
        velocity *= args["momentum"]
        velocity -= args["lr"] * grad
        weights += velocity


def test(weights, images, labels):
    correct = (np.argmax(images @ weights, axis=1) == labels).sum()
    return 100.0 * correct / len(labels)


def main(args):
    rng = np.random.default_rng(args["seed"])
    templates = rng.normal(0.0, 1.0, size=(10, 64))
    train_x, train_y = fake_digits(rng, 600, templates)
    test_x, test_y = fake_digits(rng, 200, templates)
    weights = np.zeros((64, 10))
    velocity = np.zeros_like(weights)
    for epoch in range(1, args["epochs"] + 1):
        train(args, weights, velocity, train_x, train_y, rng)
        test_acc = test(weights, test_x, test_y)
        nni.report_intermediate_result(test_acc)
        logger.debug("epoch %d: test accuracy %g", epoch, test_acc)
    nni.report_final_result(test_acc)


def get_params():
    parser = argparse.ArgumentParser(description="MNIST Example")
    parser.add_argument("--data_dir", type=str, default="./data", help="data directory")
    parser.add_argument("--batch_size", type=int, default=64, metavar="N")
    parser.add_argument("--hidden_size", type=int, default=512, metavar="N")
    parser.add_argument("--lr", type=float, default=0.01, metavar="LR")
    parser.add_argument("--momentum", type=float, default=0.5, metavar="M")
    parser.add_argument("--epochs", type=int, default=3, metavar="N")
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument("--no_cuda", action="store_true", default=False)
    parser.add_argument("--log_interval", type=int, default=1000, metavar="N")
    args, _ = parser.parse_known_args()
    return args


if __name__ == "__main__":
    try:
        tuner_params = nni.get_next_parameter()
        logger.debug(tuner_params)
        params = vars(merge_parameter(get_params(), tuner_params))
        print(params)
        main(params)
    except Exception as exception:
        logger.exception(exception)
        raise
