#!/usr/bin/env bash
# The GPU measurements docs/speed.md still lacks, in one run of about 7 minutes on an H100 (FP32,
# deterministic cuDNN): the kernel table of one training step at K = 10 and 20, step times at K = 10, 20 and 250
# with both --schedule estimates, the experiment end to end at 5 epochs with the schedule they favour (and at 50,
# up to 5 minutes more, if that is estimated under 5 minutes), two GPU runs of one command compared row for row,
# and the CUDA tests. It exits with status 1 if the two runs differ. PYTHON: the interpreter (python3); OUT: the
# folder for the figures (gpu-measurements).
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
out=${OUT:-gpu-measurements}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
$python -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name())'

$python bench.py --device cuda --profile 10 | tee "$out/profile-10.txt"
$python bench.py --device cuda --profile 20 | tee "$out/profile-20.txt"
$python bench.py --device cuda --images 10000 --populations 10 20 250 --json | tee "$out/rates.txt"

schedule=$(tail -n 1 "$out/rates.txt" | $python -c 'import json, sys
searches = json.load(sys.stdin)["full_experiment_seconds"]["searches"]
print(min(searches, key=searches.get))')
$python bench.py --device cuda --experiment --epochs 5 --schedule "$schedule" --json | tee "$out/experiment-5-epochs.txt"
estimate=$(tail -n 1 "$out/experiment-5-epochs.txt" |
           $python -c 'import json, sys; print(round(json.load(sys.stdin)["seconds_at_paper_epochs"]["total"]))')
echo "the experiment at 50 epochs: $estimate s estimated"
if (( estimate < 300 )); then
  $python bench.py --device cuda --experiment --schedule "$schedule" --json | tee "$out/experiment-50-epochs.txt"
fi

runs=$(mktemp -d)  # each run writes a CSV, its configuration, summaries and plots
trap 'rm -rf "$runs"' EXIT
for run in 1 2; do
  $python test.py --dataset digits --epochs 3 --repetitions 3 --schedule "$schedule" --device cuda --quiet \
    --output "$runs/$run.csv" >/dev/null
done
repeatable=0
$python - "$runs/1.csv" "$runs/2.csv" <<'PYTHON' | tee "$out/repeatable.txt" || repeatable=1
import csv, sys
first, second = ([{k: v for k, v in row.items() if k != 'seconds'} for row in csv.DictReader(open(path))]
                 for path in sys.argv[1:])
print(f'two GPU runs of one command: {len(first)} and {len(second)} rows, the same but seconds: {first == second}')
sys.exit(first != second)
PYTHON

$python -m pytest -q -p no:cacheprovider tests/test_network.py -k "cuda or population" 2>&1 | tail -n 3 |
  tee "$out/cuda-tests.txt"
exit $repeatable
