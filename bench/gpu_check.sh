#!/usr/bin/env bash
# GPU check, prepared to run in under 5 minutes on a machine with one NVIDIA GPU (H200 class).
#
#   bench/gpu_check.sh                          # after `make install` (uses .venv/bin/python)
#   DEVICE=cpu N_RNN=4 N_BERT=2 bench/gpu_check.sh   # the same steps with the CPU as the "device":
#                                                   # proves the plumbing on a machine without a GPU
#
# Steps (each prints its wall time; the summary at the end repeats the figures):
#   1. the tests marked `cuda` (pytest -m cuda): engine on the device = CPU for one RNN and one
#      BERT architecture, and score.py's default trainer (accelerator=auto) scoring on the GPU;
#   2. CPU reference records: N_RNN WikiText-2-log (NAS-Bench-NLP) and N_BERT NAS-Bench-BERT
#      architectures, default (paper) metrics, trainer.accelerator=cpu, joblib over the cores;
#   3. the same architectures on the device with the default trainer (accelerator=auto picks the
#      GPU), with 1 and with 4 concurrent jobs on the one GPU (hydra/launcher=joblib n_jobs=1, 4),
#      timed: architectures per second; peak memory from the records (torch.cuda.max_memory_allocated
#      per architecture) and from nvidia-smi sampled every 200 ms (all processes, CUDA contexts too);
#   4. every device record against its CPU record, score by score, at REL (1e-4) relative
#      (bench/gpu_check.py compare prints the worst difference of each score and any beyond REL).
#
# Knobs (environment): DEVICE (cuda | cpu), N_RNN (50), N_BERT (20), JOBS ("1 4"), CPU_JOBS (cores/2:
# two threads each), BERT_DATA (text_cpu: the 8 x 128 batch, so the CPU reference of 20 encoders fits
# in the time; nasbench_bert is the 128 x 512 default), REL (1e-4), STEP_TIMEOUT (150 s per step),
# OUT (a new folder in /tmp), PY (.venv/bin/python, else python3), SKIP_TESTS (1 skips step 1),
# RNN_METRICS, BERT_METRICS (metrics.names, e.g. "[hidden_covariance,num_params]"; default: the
# space's paper metrics), TFNAS_DATA_DIR (the data folder, as everywhere).
# Exit status: 0 when every step ran and every comparison was equal, else 1 (2: no CUDA device seen).
set -uo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "gpu_check.sh: no arguments (settings are environment variables; --help lists them)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
N_RNN=${N_RNN:-50}
N_BERT=${N_BERT:-20}
JOBS=${JOBS:-"1 4"}
BERT_DATA=${BERT_DATA:-text_cpu}
REL=${REL:-1e-4}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
CORES=$(nproc)
CPU_JOBS=${CPU_JOBS:-$(( CORES / 2 > 0 ? CORES / 2 : 1 ))}
OUT=${OUT:-$(mktemp -d /tmp/tfnas_gpu_check.XXXXXX)}
mkdir -p "$OUT"
T0=$(date +%s.%N)
FAIL=0
SUMMARY=()

elapsed() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }
say() { echo "[gpu_check +$(elapsed "$T0") s] $*"; }

# nvidia-smi memory sampling in the background (MiB of the whole GPU, every 200 ms); no-op without it.
SMI_PID=
smi_start() {
  SMI_PID=
  if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$1" 2>/dev/null &
    SMI_PID=$!
  fi
}
smi_stop() { if [ -n "$SMI_PID" ]; then kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; fi; SMI_PID=; }
trap smi_stop EXIT

# score SPACE RESULTS_DIR NJOBS [overrides...]: one timed score.py multirun; sets WALL.
score() {
  local space=$1 res=$2 njobs=$3; shift 3
  local n=$N_RNN data=()
  [ -n "${RNN_METRICS:-}" ] && data=("metrics.names=$RNN_METRICS")
  if [ "$space" = nasbench_bert ]; then
    n=$N_BERT; data=("data=$BERT_DATA")
    [ -n "${BERT_METRICS:-}" ] && data+=("metrics.names=$BERT_METRICS")
  fi
  local t=$(date +%s.%N)
  timeout "$STEP_TIMEOUT" "$PY" score.py -m "space=$space" "${data[@]}" "arch=range(0,$n)" \
      hydra/launcher=joblib "hydra.launcher.n_jobs=$njobs" logger=none \
      "paths.results_dir=$res" "paths.log_dir=$OUT/logs" "$@" >"$res.$space.log" 2>&1
  local rc=$?
  WALL=$(elapsed "$t")
  if [ $rc -ne 0 ]; then
    [ $rc -eq 124 ] && say "timed out after STEP_TIMEOUT=$STEP_TIMEOUT s"
    say "FAILED (exit $rc): score.py $space -> $res; last lines of $res.$space.log:"
    tail -n 15 "$res.$space.log"
    FAIL=1
    return 1
  fi
  return 0
}

say "output folder $OUT; DEVICE=$DEVICE N_RNN=$N_RNN N_BERT=$N_BERT JOBS='$JOBS' CPU_JOBS=$CPU_JOBS BERT_DATA=$BERT_DATA REL=$REL" \
    "RNN_METRICS=${RNN_METRICS:-default} BERT_METRICS=${BERT_METRICS:-default}"
"$PY" - "$DEVICE" <<'EOF'
import os, sys, torch
dev = sys.argv[1]
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA build {torch.version.cuda}), "
      f"{os.cpu_count()} CPUs, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB")
if dev == "cuda" and not torch.cuda.is_available():
    print("DEVICE=cuda but torch sees no CUDA device: a CPU build of torch (version ending in +cpu) needs the "
          "CUDA wheel (pip install torch==<same version>), or the driver is missing. DEVICE=cpu tests the plumbing.")
    sys.exit(2)
EOF
rc=$?
if [ $rc -ne 0 ]; then rmdir "$OUT" 2>/dev/null; exit $rc; fi  # nothing ran: leave no empty folder
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# 1. the CUDA test subset
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  say "1. pytest -m cuda (TFNAS_TEST_DEVICE=$DEVICE)"
  t=$(date +%s.%N)
  TFNAS_TEST_DEVICE=$DEVICE timeout "$STEP_TIMEOUT" "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/ \
      >"$OUT/pytest_cuda.log" 2>&1
  rc=$?
  tail -n 3 "$OUT/pytest_cuda.log"
  line=$(tail -n 1 "$OUT/pytest_cuda.log")
  if [ $rc -ne 0 ]; then FAIL=1; say "tests FAILED (exit $rc), see $OUT/pytest_cuda.log"; fi
  if [ "$DEVICE" = cuda ] && { grep -q skipped <<<"$line" || ! grep -q passed <<<"$line"; }; then
    FAIL=1; say "the cuda tests did not all run on the device: $line"
  fi
  SUMMARY+=("tests -m cuda: $line ($(elapsed "$t") s)")
fi

# 2. CPU reference records
for space in nasbench_nlp nasbench_bert; do
  say "2. CPU reference: $space, trainer.accelerator=cpu, $CPU_JOBS joblib jobs"
  if score "$space" "$OUT/cpu" "$CPU_JOBS" trainer.accelerator=cpu; then
    SUMMARY+=("CPU reference $space: $WALL s wall with $CPU_JOBS jobs")
  fi
done

# 3. the device, 1 and 4 concurrent jobs; 4. comparisons
ACCEL=()
[ "$DEVICE" = cpu ] && ACCEL=(trainer.accelerator=cpu)
for space in nasbench_nlp nasbench_bert; do
  for j in $JOBS; do
    res="$OUT/dev_j$j"
    say "3. $DEVICE: $space with $j concurrent job(s)"
    smi_start "$OUT/smi_${space}_j$j.txt"
    if score "$space" "$res" "$j" "${ACCEL[@]}"; then
      smi_stop
      thr=$("$PY" bench/gpu_check.py throughput "$res" --space "$space" --wall "$WALL" --jobs "$j")
      smi=$("$PY" bench/gpu_check.py memory "$OUT/smi_${space}_j$j.txt")
      echo "$thr"; echo "  $smi"
      SUMMARY+=("$thr" "  $smi")
      say "4. $space, $j job(s): device records against CPU records"
      "$PY" bench/gpu_check.py compare "$OUT/cpu" "$res" --space "$space" --rel "$REL" \
          --device "$DEVICE" >"$OUT/compare_${space}_j$j.txt" 2>&1 || FAIL=1
      cat "$OUT/compare_${space}_j$j.txt"
      SUMMARY+=("$(tail -n 1 "$OUT/compare_${space}_j$j.txt")")
    fi
    smi_stop
  done
done

echo
echo "==== gpu_check summary ($(elapsed "$T0") s in all; records and logs in $OUT) ===="
printf '%s\n' "${SUMMARY[@]}"
[ $FAIL -eq 0 ] && echo "ALL CHECKS PASSED" || echo "SOME CHECKS FAILED (see above)"
exit $FAIL
