"""The evaluate stage's numbers on the Model Registry: each (set, metric) as a tag of the model's registered
version, beside the protocol it was measured under, so the registry shows what a version scored and how.

Why tags on the version rather than only the run's ``eval/...`` metrics: the Models page is where people
choose a version (``@champion``); a version's tags are shown there and searchable, and they cannot drift
from the version they describe.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from chromapipe.layout import EVAL_METRIC, eval_metric, eval_protocol_tag, registered_model_name
from chromapipe.serving.versions import client_for, find_version

log = logging.getLogger(__name__)


def attach_evaluation(uri: str, records_by_model: dict[str, list[Any]]) -> int:
    """The evaluate stage's numbers onto each model's registered version: ``eval/<set>/<metric>`` tags and the
    protocol they were measured under (``eval/<set>/protocol``). ``records_by_model``: model -> every
    ``MetricsRecord`` of it (all its sets: a set no longer evaluated loses its tags). Records without a run
    (the gray baseline) or whose run has no version are skipped, the latter with a warning. Returns the
    number of versions updated."""
    client = client_for(uri)
    updated = 0
    for model, records in records_by_model.items():
        runs = {r.run_id for r in records if r.run_id and not r.is_baseline}
        for run_id in runs:
            name = registered_model_name(model)
            version = find_version(client, name, run_id)
            if version is None:
                log.warning("%s: no registered version of run %s (run the register stage); not attached", name, run_id)
                continue
            tags = {}
            for record in (r for r in records if r.run_id == run_id):
                for key, value in record.summary().items():
                    if value is not None:
                        tags[eval_metric(record.dataset, key)] = repr(float(value))
                tags[eval_protocol_tag(record.dataset)] = json.dumps(record.protocol, sort_keys=True, default=str)
            for key in [k for k in version.tags if k.startswith(EVAL_METRIC) and k not in tags]:
                client.delete_model_version_tag(name, version.version, key)  # a set no longer evaluated
            for key, value in tags.items():
                client.set_model_version_tag(name, version.version, key, value)
            updated += 1
            log.info("%s version %s: %d evaluation tags", name, version.version, len(tags))
    return updated
