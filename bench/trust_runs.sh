#!/bin/sh
# The runs of README "Trusting a prediction" (tiny random-weight models on
# synthetic corpora; no download), then their table:
#
#   OMP_NUM_THREADS=1 sh bench/trust_runs.sh [OUT]      # from the repository root
#
# 1. the IEMOCAP demo (recipes/IEMOCAP/run_demo.py: synthetic IEMOCAP, tiny
#    WavLM, test session 5), and the same fold trained on the evaluators'
#    votes (--targets=soft);
# 2. a synthetic CREMA-D in its release layout (with
#    processedResults/tabulatedVotes.csv), through
#    recipes/Custom/prepare_corpus.py cremad and the Custom recipe (fold 1 of
#    5, speaker-independent), with hard and with soft targets;
# 3. bench/trust_table.py on the four runs.
set -e
OUT=${1:-trust_runs}
PY=${PYTHON:-python}
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
FAST="--batch_size=8 --lr=0.01 --lr_ssl=0.002 --num_workers=0 --noprogressbar --num_threads=1"

$PY recipes/IEMOCAP/run_demo.py --out "$OUT/demo" --num-threads 1
$PY recipes/IEMOCAP/train.py recipes/IEMOCAP/hparams/train_wavlm_large.yaml \
    --data_folder="$OUT/demo/corpus/IEMOCAP_full_release" \
    --ssl_source="$OUT/demo/tiny_wavlm" --output_folder="$OUT/demo_soft" \
    --test_session=5 --seed=1993 --number_of_epochs=8 --targets=soft $FAST

$PY -c "import sys; from sser_lobes.synthetic.public_corpora import make_cremad; \
make_cremad(sys.argv[1], actors=list(range(1001, 1031)), per_class=4)" "$OUT/cremad_release"
$PY recipes/Custom/prepare_corpus.py cremad \
    --data_folder="$OUT/cremad_release/CREMA-D" --output="$OUT/cremad.csv" --overwrite
for targets in hard soft; do
    $PY recipes/Custom/train.py recipes/Custom/hparams/train_wavlm_large.yaml \
        --csv_file="$OUT/cremad.csv" --ssl_source="$OUT/demo/tiny_wavlm" \
        --output_folder="$OUT/cremad_$targets" --test_fold=1 --number_of_epochs=8 \
        --targets=$targets $FAST
done

$PY bench/trust_table.py "IEMOCAP demo, hard=$OUT/demo/run" \
    "IEMOCAP demo, soft=$OUT/demo_soft" "CREMA-D layout, hard=$OUT/cremad_hard" \
    "CREMA-D layout, soft=$OUT/cremad_soft"
