"""The experiment's trial code, frozen when it starts: its sync manifest, kept in the store.

Experiments started before the store kept manifests have theirs in
``$REMOTETUNE_HOME/experiments/<id>/manifest.json``; that file is read (and copied into the
store) when the store has none, so they still resume with their own code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remotetune.config import ExperimentConfig
from remotetune.store import Store


def dump_manifest(manifest: Any) -> str:
    return json.dumps({
        "digest": manifest.digest,
        "total_bytes": manifest.total_bytes,
        "entries": [[e.path, e.size, e.mode, e.sha256] for e in manifest.entries],
    })


def load_manifest(text: str) -> Any:
    from remotetune.sync import Manifest, ManifestEntry

    data = json.loads(text)
    entries = tuple(ManifestEntry(str(p), int(n), int(m), str(h)) for p, n, m, h in data["entries"])
    return Manifest(entries, str(data["digest"]), int(data["total_bytes"]))


def load_or_freeze(store: Store, experiment_id: str, config: ExperimentConfig,
                   home: Path) -> Any:
    """The manifest a resumed experiment started with, or freeze the code now."""
    from remotetune import sync
    from remotetune.symlinks import check_symlinks

    text = store.manifest(experiment_id)
    old_file = home / "experiments" / experiment_id / "manifest.json"
    if text is None and old_file.exists():  # an experiment from before the store kept it
        text = old_file.read_text()
        store.save_manifest(experiment_id, text)
    if text is not None:
        return load_manifest(text)
    # the controller's own check, so code driving Controller directly cannot skip it
    check_symlinks(config.trial_code_directory, follow=config.follow_symlinks, file=config.file)
    manifest = sync.build_manifest(config.trial_code_directory,
                                   cache_file=home / "hashcache.json")
    sync.freeze(config.trial_code_directory, manifest, home / "objects")
    store.save_manifest(experiment_id, dump_manifest(manifest))
    return manifest
