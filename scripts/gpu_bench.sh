#!/usr/bin/env bash
# The GPU figures of the engine and placement issues, in one go on a CUDA machine:
#   bash scripts/gpu_bench.sh [OUT_DIR]
# Runs with the machine's own python3 (torch with CUDA, safetensors, tokenizers, accelerate);
# wheels of anything else (platformdirs) may wait in .whl/. Each step has its own time limit and
# leaves its log in OUT_DIR even when cut short.
set -u
out="${1:-${OUT:-gpu-bench}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  echo "rc $? after $((SECONDS - start)) s" >>"$out/$name.txt"
  cat "$out/$name.txt"
}
step env 30 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  nproc; python3 -c "import torch, accelerate; print(torch.__version__, accelerate.__version__,
  torch.cuda.get_device_name())"'
step tests 60 python3 -m pytest -q -p no:cacheprovider tests/test_model.py tests/test_placement.py tests/test_generate.py tests/test_schedulers.py
step engine 270 python3 -m app.cli bench engine --scale mini
step placement 240 python3 -m app.cli bench placement --scale mini --budget 12 --accelerate-forwards 8
step profile 150 env PYTHONPATH="$PWD:${PYTHONPATH:-}" python3 scripts/gpu_profile.py --forwards 24
