"""An NNI custom tuner, written as NNI's docs show ("Customize Tuner"): random search over
NNI's search-space format, nested choices included. Nothing in it knows remotetune.

classArgs: optimize_mode, seed, budget (raise NoMoreTrialError after that many), log (a
file that gets one JSON line per call from NNI, so the tests can see what it was told).
"""

import json
import math
import random

import nni
from nni.tuner import Tuner
from nni.utils import OptimizeMode, extract_scalar_reward


class RandomNniTuner(Tuner):
    def __init__(self, optimize_mode="maximize", seed=None, budget=None, log=None):
        self.mode = OptimizeMode(optimize_mode)
        self.rng = random.Random(seed)
        self.budget = budget
        self.log = log
        self.space = None
        self.issued = 0
        self.best = None

    def _write(self, *event):
        if self.log:
            with open(self.log, "a") as f:
                f.write(json.dumps(event) + "\n")

    def update_search_space(self, search_space):
        self.space = search_space
        self._write("update_search_space", sorted(search_space))

    def generate_parameters(self, parameter_id, **kwargs):
        if self.budget is not None and self.issued >= self.budget:
            raise nni.NoMoreTrialError("budget spent")
        self.issued += 1
        params = sample(self.space, self.rng)
        self._write("generate_parameters", parameter_id, params)
        return params

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        reward = extract_scalar_reward(value)
        if self.mode is OptimizeMode.Minimize:
            reward = -reward
        if self.best is None or reward > self.best:
            self.best = reward
        self._write("receive_trial_result", parameter_id, parameters, value)

    def trial_end(self, parameter_id, success, **kwargs):
        self._write("trial_end", parameter_id, success)

    def import_data(self, data):
        self._write("import_data", data)


def sample(space, rng):
    return {name: _draw(spec["_type"], spec["_value"], rng) for name, spec in space.items()}


def _draw(kind, value, rng):
    if kind == "choice":
        option = rng.choice(value)
        if isinstance(option, dict) and "_name" in option:
            inner = {k: v for k, v in option.items() if k != "_name"}
            return {"_name": option["_name"], **sample(inner, rng)}
        return option
    if kind == "randint":
        return rng.randrange(value[0], value[1])
    base = kind[1:] if kind.startswith("q") else kind
    if base == "uniform":
        x = rng.uniform(value[0], value[1])
    elif base == "loguniform":
        x = math.exp(rng.uniform(math.log(value[0]), math.log(value[1])))
    elif base == "normal":
        x = rng.gauss(value[0], value[1])
    else:  # lognormal
        x = math.exp(rng.gauss(value[0], value[1]))
    if kind.startswith("q"):
        x = round(x / value[2]) * value[2]
        if base in ("uniform", "loguniform"):
            x = min(max(x, value[0]), value[1])
    return x
