"""remotetune: hyperparameter tuning across remote GPU machines over plain SSH.

This file is shipped to trial hosts: it must stay standard-library only and import nothing.
"""

__version__ = "0.1.0"
