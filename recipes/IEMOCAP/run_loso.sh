#!/usr/bin/env bash
# Cross-validation loop of the IEMOCAP recipe, then the mean ± std table.
#
#   ./run_loso.sh HPARAMS DATA_FOLDER [extra train.py overrides...]
#
# Environment:
#   SEEDS="1993 1994 1995"  seeds to run (default: 1993)
#   SPLIT_MODE=loso|lospk   5 held-out sessions (default) or 10 held-out speakers
#   RESULTS=results/IEMOCAP where the run folders are (for the final table)
#   PYTHON=python           interpreter
#
# Example (system A, HuBERT large, 5 folds x 3 seeds):
#   SEEDS="1993 1994 1995" ./run_loso.sh hparams/train_hubert_large.yaml \
#       /data/IEMOCAP_full_release
# A fold that already finished resumes from its checkpoint and re-evaluates.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
hparams=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
data_folder=$2
shift 2
seeds=${SEEDS:-1993}
split_mode=${SPLIT_MODE:-loso}
results=${RESULTS:-results/IEMOCAP}
python=${PYTHON:-python}

if [ ! -f "$hparams" ]; then
    echo "run_loso.sh: hyperparameter file not found: $1" >&2
    exit 2
fi
if [ ! -d "$data_folder" ]; then
    echo "run_loso.sh: data folder not found: $data_folder" >&2
    exit 2
fi

for seed in $seeds; do
    for session in 1 2 3 4 5; do
        case "$split_mode" in
            loso)
                "$python" "$here/train.py" "$hparams" --data_folder="$data_folder" \
                    --split_mode=loso --test_session="$session" --seed="$seed" "$@"
                ;;
            lospk)
                for side in F M; do
                    speaker="Ses0${session}${side}"
                    "$python" "$here/train.py" "$hparams" --data_folder="$data_folder" \
                        --split_mode=lospk --test_session="$session" \
                        --test_speaker="$speaker" --seed="$seed" "$@"
                done
                ;;
            *)
                echo "run_loso.sh: SPLIT_MODE must be loso or lospk, got $split_mode" >&2
                exit 2
                ;;
        esac
    done
done

"$python" "$here/aggregate.py" "$results" \
    --markdown "$results/summary.md" --json "$results/summary.json"
