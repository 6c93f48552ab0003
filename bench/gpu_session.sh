#!/usr/bin/env bash
# Every GPU figure of issue #13 in one call of a lent GPU machine (reports/benchmarks.md, "GPU session").
#
# Why one script: device time is scarce (one machine start costs minutes), so the whole session is prepared
# and checked beforehand and runs once; each section has its own time limit, so one that fails or runs long
# costs only its slot, and what finished is kept. It runs in a scratch copy of the repository (it switches
# ChromaGAN's backbone to random init there: speed does not depend on weights, and the VGG16 file is not
# carried), so it never edits the checkout it is started from.
#
#   bash bench/gpu_session.sh CARRY_DIR RESULTS_DIR
#
# CARRY_DIR (built on a machine with the packages; an ignored path, e.g. data/gpu) holds:
#   wheels/   lpips, torch-fidelity and efficientnet_lite_pytorch wheels (the GPU image lacks them)
#   weights/  chromapipe's weight cache: MANIFEST.json, alexnet_features.pth, efficientnet-lite0-*.pth
#   thesis-repo/  models.py and losses.py of lorenzo-saccaro/image-colorization-classification (+ COMMIT)
#   photos/   an ImageFolder tree of real photos (bench/make_resized_sample.py: 256-px short side)
# Environment:
#   DEADLINE  seconds (540): no section runs past it, so the call ends inside the device's 10-minute limit
#   PACK      a .tgz path: the results so far are packed into it after every section (a call cut short
#             still returns what finished)
#   ONLY      section names: run only these
#   DEVICE    cuda; PY the Python holding torch (python3); QUICK=1 a CPU dry run with tiny sizes
set -u
CARRY=$(realpath "${1:?carry dir}")
RESULTS=$(realpath -m "${2:?results dir}")
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
PY=${PY:-python3}  # the GPU image's python3 holds torch
DEADLINE=${DEADLINE:-540}
mkdir -p "$RESULTS"
WORK=$(mktemp -d /tmp/gpu-session-XXXX)
tar --exclude=./.venv --exclude=./data --exclude=./.git --exclude=./mlartifacts --exclude=./models -cf - . | tar -xf - -C "$WORK"
cd "$WORK" || exit 1
sed -i 's/backbone_weights: imagenet/backbone_weights: random/' params.yaml params-paper.yaml

rm -rf /tmp/gpu-session-site
"$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-session-site "$CARRY"/wheels/*.whl 2>&1 | tail -2
export PYTHONPATH=$WORK/src:/tmp/gpu-session-site PYTHONUNBUFFERED=1 CHROMAPIPE_WEIGHTS_DIR=$CARRY/weights
START=$(date +%s)
THESIS_COMMIT=$(cat "$CARRY/thesis-repo/COMMIT" 2>/dev/null || echo unknown)

# section NAME SECONDS CMD...: runs CMD with a time limit, its output in RESULTS/NAME.log, one status line here
section() {
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local left=$((DEADLINE - (t0 - START)))
  if [ "$left" -lt 20 ]; then echo "== $name skipped: the session's ${DEADLINE}s are spent"; return; fi
  [ "$left" -lt "$limit" ] && limit=$left
  timeout "$limit" "$@" >"$RESULTS/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc $(($(date +%s) - t0))s (elapsed $(($(date +%s) - START))s)"
  [ "$rc" != 0 ] && tail -4 "$RESULTS/$name.log" | cut -c1-300
  [ -n "${PACK:-}" ] && tar -czf "$PACK" -C "$RESULTS" .
  grep -E "^(wrote|\{|pix2pix|chromagan|palgan|speedup|thesis|chromapipe|step-only|end to end)" "$RESULTS/$name.log" | cut -c1-400 | tail -12
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
  "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cudnn', torch.backends.cudnn.version())"
  nproc; } >"$RESULTS/machine.txt" 2>&1
cat "$RESULTS/machine.txt"

if [ "$QUICK" = 1 ]; then
  S=1; W=0; B8=2; B32=2; ALL="pix2pix"; P=params.yaml; BIG=2; STEPS_IN=4
  EVAL="--batch-sizes 4 --batches 2"; COLOR="--sizes 1 --repeats 1 --models pix2pix"; VS_STEPS=1; AMP=""; LW="0 2"; LOGEV=2; REPEAT=1
  IN_BATCHES=4; GRAPHS=cl; ALL_PALGAN_FIRST=$ALL
else
  S=20; W=5; B8=8; B32=32; ALL="pix2pix,pix2pix_class,pix2pix_wgan_class,chromagan,palgan,palgan_no_ca,palgan_global_ca,palgan_local_ca"; P=params-paper.yaml; BIG=128; STEPS_IN=60
  EVAL=""; COLOR="--sizes 6 --repeats 3 --models pix2pix chromagan palgan"; VS_STEPS=30; AMP="--amp"; LW="6"; LOGEV=10; REPEAT=8  # 8 x 259 images: no epoch restart inside the 60 steps
  IN_BATCHES=40; GRAPHS=graphs  # one compiled variant: compiling costs most of the slot
  # the CUDA-graph section's order: PalGAN first, the model graphs are for (launch-bound)
  ALL_PALGAN_FIRST="palgan,pix2pix,chromagan,palgan_no_ca,pix2pix_class,pix2pix_wgan_class,palgan_global_ca,palgan_local_ca"
fi
T="$PY bench/bench_train.py --params $P --device $DEVICE --steps $S --warmup $W"
# the CUDA-graph sections log why a graph broke or was not recorded (the JSON has the counts: "compiled",
# "torch_compile"), so a skip is explained by this session rather than by the next one
WHY="env TORCH_LOGS=graph_breaks,cudagraphs"

# What the last session (H200, reports/benchmarks.md) left unmeasured comes first, in the order of the goals
# still open; sections the deadline skips can be run in a second call with ONLY.
# 1. training input: real rgb8 shards (params-paper.yaml's encoding) through the loop's loader, decoded in the
#    loader's workers vs on the GPU (train.input_decode), against step-only
section input 150 "$PY" bench/bench_input.py --engine loop --device "$DEVICE" $AMP --channels-last --cudnn-benchmark \
  --batch-size $B32 --steps $STEPS_IN --log-every $LOGEV --loader-workers $LW --input-decode loader device --threads "$(nproc)" \
  --encoding rgb8 --root "$CARRY/photos" --repeat $REPEAT --out "$RESULTS/input-cuda.json"
# 2. ours vs the thesis's code, pix2pix ①, the paper's batch (8): plain, and compiled as CUDA graphs
section vs-thesis-graphs 150 $WHY "$PY" bench/bench_vs_thesis.py --thesis-repo "$CARRY/thesis-repo" --device "$DEVICE" --batch-size $B8 \
  --steps $VS_STEPS --warmup $W --cudnn-benchmark --variants plain $GRAPHS --out "$RESULTS/vs-thesis-graphs-cuda.json"
# 3. the input path alone: the rate it can deliver and its CPU cost per image, decoded in the loader vs on the GPU
section input-loader 60 "$PY" bench/bench_input.py --engine loader --device "$DEVICE" --batch-size $B32 --steps $IN_BATCHES \
  --loader-workers $LW --input-decode loader device --threads "$(nproc)" --encoding rgb8 --root "$CARRY/photos" \
  --repeat $REPEAT --out "$RESULTS/input-loader-cuda.json"
# 4. the evaluate stage's metrics on the GPU, FID in-process (fid_update) included
section evaluate 60 "$PY" bench/bench_evaluate.py --device "$DEVICE" --images "$CARRY/photos" $EVAL --out "$RESULTS/evaluate-cuda.json"
# 5. the tests of the device paths on a real GPU (input decode; colorize: nvJPEG, truncated JPEGs, the tiny recipe on CUDA)
section pytest-cuda 90 "$PY" -m pytest -q -s -p no:cacheprovider -m "not slow" --continue-on-collection-errors \
  tests/test_input_decode.py tests/test_colorize_gpu_path.py tests/test_colorize.py
# 6. every paper model at batch 32, CUDA graphs on top of the fast settings; then pix2pix at 8 the same way
section train-graphs-b32 200 $WHY $T --models $ALL_PALGAN_FIRST --batch-size $B32 $AMP --channels-last --cudnn-benchmark --compile --compile-mode reduce-overhead \
  --out "$RESULTS/train-cuda-bf16-cl-graphs-cudnnb-b32.json"
section p2p-graphs-b8 100 $WHY $T --models pix2pix --batch-size $B8 --cudnn-benchmark --compile --compile-mode reduce-overhead \
  --out "$RESULTS/train-cuda-graphs-cudnnb-b8.json"
# 7. repeats of the last session's sections (the reference figures on this machine)
section train-fast-b32 150 $T --models $ALL --batch-size $B32 $AMP --channels-last --cudnn-benchmark --out "$RESULTS/train-cuda-bf16-cl-cudnnb-b32.json"
section train-plain-b32 150 $T --models $ALL --batch-size $B32 --out "$RESULTS/train-cuda-fp32-b32-rerun.json"
section inference 90 "$PY" bench/bench_inference.py --params $P --device "$DEVICE" --models chromagan pix2pix --warmup 3 --repeats 10 \
  --batch-sizes 1 16 64 $BIG --out "$RESULTS/inference-cuda.json"
section colorize 120 "$PY" bench/bench_colorize.py --device "$DEVICE" $COLOR --out "$RESULTS/colorize-cuda.json"

echo "thesis commit: $THESIS_COMMIT" >>"$RESULTS/machine.txt"
echo "done in $(($(date +%s) - START))s"
rm -rf "$WORK"
