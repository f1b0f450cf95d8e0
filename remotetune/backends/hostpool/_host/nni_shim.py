"""Shipped to hosts as ``nni/__init__.py``: lets NNI trial code (``import nni``) run unchanged.

Standard library only. Maps NNI's trial API onto :mod:`remotetune.trial`.
"""

from remotetune.trial import (  # noqa: F401
    get_experiment_id,
    get_next_parameter,
    get_sequence_id,
    get_trial_id,
    report_final_result,
    report_intermediate_result,
)

get_current_parameter = get_next_parameter

__version__ = "remotetune-shim"
