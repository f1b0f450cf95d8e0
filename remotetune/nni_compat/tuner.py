"""``nni.tuner``: the base class of NNI's custom tuners.

remotetune drives a subclass through :class:`remotetune.tuners._nni.NniTuner`: it calls
``update_search_space`` once, ``generate_multiple_parameters`` (one id at a time) for each
new trial, ``receive_trial_result`` when a trial it proposed reports a final result,
``import_data`` for trials it did not propose (restored or imported ones) and ``trial_end``
when a trial it proposed ends.
"""

from __future__ import annotations

from typing import Any, List

from . import NoMoreTrialError
from .recoverable import Recoverable
from .typehint import Parameters, SearchSpace, TrialMetric, TrialRecord

__all__ = ["Tuner"]


class Tuner(Recoverable):
    """Override ``update_search_space``, ``receive_trial_result`` and ``generate_parameters``
    (or ``generate_multiple_parameters``); raise ``nni.NoMoreTrialError`` when done."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> Parameters:
        raise NotImplementedError("Tuner: generate_parameters not implemented")

    def generate_multiple_parameters(self, parameter_id_list: List[int],
                                     **kwargs: Any) -> List[Parameters]:
        """``generate_parameters`` for each id, until it raises ``NoMoreTrialError``."""
        out: List[Parameters] = []
        for parameter_id in parameter_id_list:
            try:
                out.append(self.generate_parameters(parameter_id, **kwargs))
            except NoMoreTrialError:
                break
        return out

    def receive_trial_result(self, parameter_id: int, parameters: Parameters,
                             value: TrialMetric, **kwargs: Any) -> None:
        raise NotImplementedError("Tuner: receive_trial_result not implemented")

    def _accept_customized_trials(self, accept: bool = True) -> None:
        self._accept_customized = accept

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        return None

    def update_search_space(self, search_space: SearchSpace) -> None:
        raise NotImplementedError("Tuner: update_search_space not implemented")

    def import_data(self, data: List[TrialRecord]) -> None:
        return None

    def _on_exit(self) -> None:
        return None

    def _on_error(self) -> None:
        return None
