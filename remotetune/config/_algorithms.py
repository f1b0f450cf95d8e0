"""Checks of the tuner (or advisor) and assessor against their registries, at load time.

An unknown built-in name, an unknown class argument, a bad argument value, or an assessor
paired with a tuner that stops its own trials (Hyperband, BOHB) is a :class:`ConfigError` with
the file, key and line, before anything is stored; so is NNI's PBT or PPOTuner (which cannot
run here) and a GP without PyTorch. Custom classes (``className``, or a name written
``module:Class``, remotetune's or NNI's) are user code: :func:`check_custom` imports and
builds them for ``remotetune run`` only (``load_experiment(..., import_custom=True)``), so a
class that does not import, is not a tuner or assessor, or refuses its arguments is an error
at its line before anything is stored, while ``convert`` and ``check`` never run user code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from remotetune.config._fields import Section, did_you_mean
from remotetune.errors import RemotetuneError
from remotetune.space import SearchSpace

_ADVISORS = ("Hyperband", "BOHB")


def _custom(sec: Section) -> bool:
    name = sec.get("name")
    return sec.has("className") or not isinstance(name, str) or ":" in name or "." in name


def _arg_error(sec: Section, args_sec: Section | None, err: RemotetuneError,
               args: Mapping[str, Any], *, at: str | None = None,
               hint: str | None = None) -> Exception:
    """A ConfigError at the class argument the message names, else at ``at`` (with
    ``hint``), else at classArgs / name."""
    text = str(err)
    if args_sec is not None:
        for key in args:
            if re.search(rf"'{re.escape(str(key))}'", text):
                return args_sec.fail(str(key), text)
    if at is not None:
        return sec.fail(at, text, hint=hint)
    return sec.fail("classArgs" if args_sec is not None else "name", text)


def check_tuner(top: Section, key: str, space: SearchSpace, seed: int | None) -> type | None:
    """Validate ``top[key]`` (tuner or advisor); the tuner class when it is a built-in.

    NNI's names that run as another built-in (SMAC, Metis...) are checked as that one, with
    their class arguments translated (``tuners._nni_names``); PBT and PPOTuner are refused.
    """
    from remotetune.tuners import create_tuner, tuner_class
    from remotetune.tuners._nni_names import REFUSED, nni_name, stand_in

    sec = top.section(key)
    if sec is None or _custom(sec):
        return None
    name = str(sec.get("name"))
    args_sec = sec.section("classArgs")
    args = dict(args_sec.data) if args_sec is not None else {}
    try:
        cls = tuner_class(name)
    except RemotetuneError as exc:
        refused = REFUSED.get(nni_name(name) or "")
        hint = (f"write `name: {refused[0]}`" if refused
                else "names ignore case, '_' and '-'")
        raise sec.fail("name", str(exc), hint=hint) from None
    if key == "advisor" and cls.accepts_assessor:
        raise sec.fail("name", f"{name} is a tuner, not an advisor (advisors: "
                       f"{', '.join(_ADVISORS)})", hint=f"write `tuner: {{name: {name}}}`")
    if nni_name(name) is not None:
        try:
            stand_in(name, args)
        except RemotetuneError as exc:
            raise _arg_error(sec, args_sec, exc, args) from None
    else:
        _check_arg_names(name, cls.class_arg_names() | {"optimize_mode", "seed"}, args_sec)
    try:
        create_tuner(name, args, space, seed=seed)
    except RemotetuneError as exc:
        raise _arg_error(sec, args_sec, exc, args) from None
    return cls


def _check_arg_names(name: str, accepted: frozenset[str], args_sec: Section | None) -> None:
    for arg in args_sec.data if args_sec is not None else ():
        if arg not in accepted:
            close = did_you_mean(str(arg), accepted)
            assert args_sec is not None
            raise args_sec.fail(str(arg), f"{name} has no class argument {arg!r}",
                                hint=(f"did you mean {close}? " if close else "")
                                + f"it accepts: {', '.join(sorted(accepted))}")


def check_assessor(top: Section, tuner_key: str, tuner_cls: type | None) -> None:
    """Validate ``top.assessor`` and its pairing with the tuner."""
    from remotetune.assessors import assessor_arg_names, assessor_class, create_assessor

    sec = top.section("assessor")
    if sec is None:
        return
    if tuner_key == "advisor":
        raise top.fail("assessor", "an advisor stops its own trials: it takes no assessor",
                       hint="remove the assessor, or use a tuner with it")
    if tuner_cls is not None and not getattr(tuner_cls, "accepts_assessor", True):
        tuner = top.section(tuner_key)
        tuner_name = tuner.get("name") if tuner is not None else tuner_cls.__name__
        raise sec.fail("name" if sec.has("name") else "className",
                       f"the tuner {tuner_name} stops its own trials: it takes no assessor",
                       hint="remove the assessor, or use another tuner, e.g. TPE")
    if _custom(sec):
        return
    name = str(sec.get("name"))
    try:
        assessor_class(name)
        accepted = assessor_arg_names(name)
    except RemotetuneError as exc:
        raise sec.fail("name", str(exc), hint="names ignore case, '_' and '-'") from None
    args_sec = sec.section("classArgs")
    args = dict(args_sec.data) if args_sec is not None else {}
    _check_arg_names(name, accepted, args_sec)
    try:
        create_assessor(name, args)
    except RemotetuneError as exc:
        raise _arg_error(sec, args_sec, exc, args) from None


def check_custom(top: Section, tuner_key: str, space: SearchSpace, seed: int | None) -> None:
    """Build the custom tuner (or advisor) and assessor now, as the run will (user code)."""
    from remotetune.assessors import create_assessor
    from remotetune.tuners import create_tuner

    tuner = top.section(tuner_key)
    tuner_args = tuner.section("classArgs") if tuner is not None else None
    mode = (tuner_args.data if tuner_args is not None else {}).get("optimize_mode")
    builders = {
        tuner_key: lambda name, args, code: create_tuner(name, args, space,
                                                          code_directory=code, seed=seed),
        "assessor": lambda name, args, code: create_assessor(name, args, code_directory=code,
                                                             optimize_mode=mode),
    }
    for key, build in builders.items():
        sec = top.section(key)
        if sec is None or not _custom(sec):
            continue
        where = "className" if sec.has("className") else "name"
        args_sec = sec.section("classArgs")
        args = dict(args_sec.data) if args_sec is not None else {}
        code = sec.local_path("codeDirectory", kind="directory") if sec.has(
            "codeDirectory") else None
        try:
            build(str(sec.get(where)), args, None if code is None else str(code))
        except RemotetuneError as exc:
            raise _arg_error(sec, args_sec, exc, args, at=where,
                             hint="fix the module path or the class") from None
