"""The SSH and local host pool: slot table, worker threads, sessions, agent client and the
standard-library bundle shipped to every host (``_host/``, laid out there as
``remotetune/_host/``)."""

from remotetune.backends.hostpool._backend import HostPoolBackend

__all__ = ["HostPoolBackend"]
