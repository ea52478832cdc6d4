#!/usr/bin/env bash
# Cross-validation loop of the generic recipe, then the mean ± std table.
#
#   ./run_folds.sh HPARAMS CSV_FILE [extra train.py overrides...]
#
# Runs every speaker_kfold fold of the CSV (the number of folds is computed
# from its speakers: NUM_FOLDS, or one fold per speaker when there are fewer).
# Environment:
#   SEEDS="1993 1994 1995"  seeds to run (default: 1993)
#   NUM_FOLDS=5             folds (0: one per speaker, leave-one-speaker-out)
#   RESULTS=results/Custom  where the run folders are (for the final table)
#   PYTHON=python           interpreter
#
# Example (WavLM large, 5 folds x 3 seeds):
#   SEEDS="1993 1994 1995" ./run_folds.sh hparams/train_wavlm_large.yaml emodb.csv
# A fold that already finished resumes from its checkpoint and re-evaluates.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
hparams=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
csv_file=$2
shift 2
seeds=${SEEDS:-1993}
num_folds=${NUM_FOLDS:-5}
results=${RESULTS:-results/Custom}
python=${PYTHON:-python}

if [ ! -f "$hparams" ]; then
    echo "run_folds.sh: hyperparameter file not found: $1" >&2
    exit 2
fi
if [ ! -f "$csv_file" ]; then
    echo "run_folds.sh: corpus file not found: $csv_file" >&2
    exit 2
fi

folds=$("$python" "$here/custom_prepare.py" --csv_file="$csv_file" \
    --num_folds="$num_folds" --print_num_folds)
echo "run_folds.sh: $folds folds of $csv_file"

for seed in $seeds; do
    for fold in $(seq 1 "$folds"); do
        "$python" "$here/train.py" "$hparams" --csv_file="$csv_file" \
            --split_mode=speaker_kfold --num_folds="$num_folds" \
            --test_fold="$fold" --seed="$seed" "$@"
    done
done

"$python" "$here/aggregate.py" "$results" \
    --markdown "$results/summary.md" --json "$results/summary.json"
