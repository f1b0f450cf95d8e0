"""Where trials run: each backend places, launches, polls and kills trials, and never decides."""

from remotetune.backends._base import *  # noqa: F403 (the interface: _base.__all__)
from remotetune.backends._base import __all__ as _interface
from remotetune.backends._default import default_backends

__all__ = [*_interface, "default_backends"]
