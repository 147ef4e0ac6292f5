#!/usr/bin/env bash
# Training throughput on a lent GPU machine (see README "Benchmarks"): EfficientNet-B0 at 224, dermpipe's model
# against the bare keras.applications backbone, under Keras 3 on the machine's JAX (that image has no TensorFlow,
# and TensorFlow's wheels are too large to carry). Wheels for keras/namex/optree travel in .whl (not committed).
# Results: one JSON line per measurement in ${OUT:-.}/train_throughput.jsonl, GPU utilisation in gpu_util.csv.
set -u
out=${OUT:-.}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi -L
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,clocks.sm,power.draw \
  --format=csv -lms 500 >"$out/gpu_util.csv" 2>&1 &
smi=$!
run() { timeout "$1" python3 benchmarks/train_throughput.py --json "$out/train_throughput.jsonl" "${@:2}"; }
run 150 --batch-size 256 --steps 60                        # fp16 mixed precision, the train task's default
run 110 --batch-size 256 --steps 60 --augment-xla          # the gather resampler instead of affine_transform
run 110 --batch-size 256 --steps 60 --mixed-precision bf16 # Hopper's bf16: no loss scaling
run 130 --batch-size 512 --steps 40                        # a larger batch: is the GPU still not full?
kill $smi
