#!/usr/bin/env bash
# The study's training on a lent CUDA machine, handed back as tar files (evaluation runs here).
#
#   bash bench/device_study.sh DATA_ROOT OUT [extra `ablation.py run` arguments]
#
# On the machine: wheels in .whl/ are installed to /tmp/site (kornia, where the image lacks
# it); gradguide runs from this tree (bench/srcpath.sh); CUDA MPS is started when the
# driver has it and a CUDA client works under it (the arms are small, launch-bound
# processes that share one GPU), else the arms time-slice the GPU. Then
#
#   ablation.py run --budget gpu --no-eval --jobs JOBS --psnr-until-s PSNR_S --gan-until-s GAN_S
#   ablation.py pack --out OUT       # compared snapshots (fp16), plan, logs, curves
#
# and, back here, after unpacking OUT/study*.tar into WORK:
#
#   python bench/ablation.py run --budget gpu --eval-only --work WORK --only ...  (the same arms)
#
# Environment: JOBS (default 11), PSNR_S (180), GAN_S (450), WORK (/tmp/study), DEVICE_DRY=1
# (CPU, budget quick: what CI and a dry run use).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="$1"; OUT="$2"; shift 2
WORK="${WORK:-/tmp/study}"
mkdir -p "$OUT" "$WORK"
if [[ -z "${DEVICE_DRY:-}" ]] && compgen -G ".whl/*.whl" >/dev/null; then  # the dry run installs nothing
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# shellcheck source=bench/srcpath.sh
source "$ROOT/bench/srcpath.sh"
{ date -u; git rev-parse HEAD 2>/dev/null; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1; } > "$WORK/machine.txt"
if [[ -n "${DEVICE_DRY:-}" ]]; then
    BUDGET=quick; DEV=cpu
else
    BUDGET=gpu; DEV=cuda
    if command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
        export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
        mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
        if nvidia-cuda-mps-control -d && timeout 60 "$PY" -c "import torch; print('MPS client:', float(torch.ones(8, device='cuda').sum()))"; then
            echo "MPS: on" | tee -a "$WORK/machine.txt"
        else
            echo quit | timeout 10 nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
            echo "MPS: off (did not start or no client worked)" | tee -a "$WORK/machine.txt"
        fi
    else
        echo "MPS: not available" | tee -a "$WORK/machine.txt"
    fi
fi
# a hung arm must not cost the hand-back: the whole run stops 40 s after the GAN time box
timeout -s TERM "$(( ${GAN_S:-450} + 40 ))" "$PY" bench/ablation.py run --budget "$BUDGET" --device "$DEV" --no-eval --no-export --work "$WORK" --data-root "$DATA" \
    --jobs "${JOBS:-11}" --psnr-until-s "${PSNR_S:-180}" --gan-until-s "${GAN_S:-450}" "$@" 2>&1 | tee "$WORK/run.log"
rc=${PIPESTATUS[0]}
"$PY" bench/ablation.py pack --work "$WORK" --out "$OUT"
[[ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ]] && { echo quit | timeout 10 nvidia-cuda-mps-control; }
exit "$rc"
