"""DVC stage `prepare@<dataset>`: source images -> L*a*b* shards + manifest (data/prepared/<dataset>)."""

import sys

from _stage import run_stage

from chromapipe.data.prepare import prepare

if __name__ == "__main__":
    name = sys.argv[1]
    run_stage(lambda params: prepare(params.dataset(name), params.dataset_dir(name), key=f"datasets.{name}"))
