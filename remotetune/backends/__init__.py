"""Where trials run: each backend places, launches, polls and kills trials, and never decides."""

from remotetune.backends._base import (
    TIMEOUT_REASON,
    Backend,
    Envelope,
    ExitInfo,
    LaunchResult,
    LaunchSpec,
    OpenSpec,
    PlaceResult,
    PollRequest,
    Report,
    ReportKind,
    RunState,
    Sink,
    TrialHandle,
    TrialPoll,
)

__all__ = [
    "TIMEOUT_REASON",
    "Backend",
    "Envelope",
    "ExitInfo",
    "LaunchResult",
    "LaunchSpec",
    "OpenSpec",
    "PlaceResult",
    "PollRequest",
    "Report",
    "ReportKind",
    "RunState",
    "Sink",
    "TrialHandle",
    "TrialPoll",
]
