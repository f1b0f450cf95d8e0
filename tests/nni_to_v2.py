"""Run NNI's own v1-to-v2 converter on experiment files (for tests/test_nni_v1.py).

Runs in a separate virtualenv with ``nni==3.0`` (never imported by the test suite itself):
``python nni_to_v2.py FILE...`` prints one JSON object, file -> NNI's v2 dict, as
the last line (NNI's own warnings go to stdout too). Only the
converter is used; no NNI experiment runs.
"""

import json
import sys

import yaml
from nni.experiment.config.convert import to_v2

out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as handle:
        out[path] = to_v2(yaml.safe_load(handle))
print(json.dumps(out))
