"""DVC stage `prepare@<dataset>`: source images -> L*a*b* shards + manifest (data/prepared/<dataset>)."""

import sys

from _stage import run_stage

from chromapipe.data.prepare import prepare

if __name__ == "__main__":
    run_stage(lambda params: prepare(params.dataset(sys.argv[1]), params.dataset_dir(sys.argv[1])))
