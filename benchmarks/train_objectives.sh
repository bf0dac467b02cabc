#!/usr/bin/env bash
# Objectives compared at an equal budget (issue 3): Poisson (look-ahead 2 and per-frame), binary,
# tokens and interpolated (tokens + Poisson, paper 4.6) on the same backbone, data, steps and batch;
# then the length studies: train on word clips of at most 4 s (8 s), test on 4-8 s (8-12 s) clips of
# held-out voices.
#
#   bash benchmarks/train_objectives.sh [RUNS_DIR] [STEPS]
#
# Every `framestamp train` below resumes if the script is killed and run again.
# benchmarks/objectives_table.py turns the evaluations into benchmarks/results/cpu/objectives.md.
set -euo pipefail
RUNS=${1:-runs/objectives}
STEPS=${2:-1500}
TRAIN_VOICES=en,en-us,en-gb-scotland,en-gb-x-gbclan,en-gb-x-rp,en-gb-x-gbcwmd
HELD_OUT=en-029,en-us-nyc
COMMON=(--backbone omni-tiny --steps "$STEPS" --batch-size 8 --lr 1e-3 --warmup 100
        --eval-every 500 --save-every 250 --eval-limit 200 --threads "${THREADS:-2}" --seed 0)

# In distribution: all tasks, the shipped model's data (2-8 s words, 5 s speaker mixes, 10 s events).
DATA=runs/data
[ -f "$DATA/train/manifest.jsonl" ] || framestamp synth "$DATA/train" --count 3000 --seed 1 \
    --voices "$TRAIN_VOICES" --min-seconds 2 --max-seconds 8 --workers 2
[ -f "$DATA/eval/manifest.jsonl" ] || framestamp synth "$DATA/eval" --count 150 --seed 2 \
    --voices "$HELD_OUT" --min-seconds 2 --max-seconds 8 --workers 2
for run in poisson:2 poisson:0 binary:2 tokens:0 interpolated:2; do
    objective=${run%:*} lookahead=${run#*:}
    out="$RUNS/all-$objective-la$lookahead"
    extra=(); [ "$objective" = interpolated ] && extra=(--poisson-weight 0.05)  # the paper's lambda (4.6)
    [ -d "$out/model" ] || framestamp train "$out" --train "$DATA/train/manifest.jsonl" \
        --eval "$DATA/eval/manifest.jsonl" --objective "$objective" --lookahead "$lookahead" "${COMMON[@]}" "${extra[@]}"
    [ -f "$out/eval.json" ] || { framestamp evaluate "$out/model" "$DATA/eval/manifest.jsonl" --limit 1200 --json \
        > "$out/eval.json.tmp" && mv "$out/eval.json.tmp" "$out/eval.json"; }
    # The interpolated model answers both ways: its frame head (above) and its generated text.
    [ "$objective" != interpolated ] || [ -f "$out/eval-tokens.json" ] || { framestamp evaluate "$out/model" \
        "$DATA/eval/manifest.jsonl" --method tokens --limit 1200 --json > "$out/eval-tokens.json.tmp" \
        && mv "$out/eval-tokens.json.tmp" "$out/eval-tokens.json"; }
done

# Length generalization, words only: train on clips up to LIMIT s, test on LIMIT..2xLIMIT-ish s clips of
# held-out voices (and on <= LIMIT s, in distribution). Two grids: 4 -> 4-8 s and 8 -> 8-12 s.
length_study() {
    local prefix=$1 data=$2 limit=$3 longest=$4 train_seed=$5 eval_seed=$6
    [ -f "$data/train/manifest.jsonl" ] || framestamp synth "$data/train" --tasks words --count 3000 \
        --seed "$train_seed" --voices "$TRAIN_VOICES" --min-seconds 1 --max-seconds "$limit" --workers 2
    [ -f "$data/eval/manifest.jsonl" ] || framestamp synth "$data/eval" --tasks words --count 300 \
        --seed "$eval_seed" --voices "$HELD_OUT" --min-seconds 1 --max-seconds "$longest" --workers 2
    for objective in poisson binary tokens; do
        local lookahead=2; [ "$objective" = tokens ] && lookahead=0
        local out="$RUNS/$prefix-$objective"
        [ -d "$out/model" ] || framestamp train "$out" --train "$data/train/manifest.jsonl" \
            --eval "$data/eval/manifest.jsonl" --eval-max-seconds "$limit" --objective "$objective" \
            --lookahead "$lookahead" "${COMMON[@]}"
        for range in "short:--max-seconds $limit" "long:--min-seconds $limit"; do
            local name=${range%%:*} filter=${range#*:}
            # shellcheck disable=SC2086
            [ -f "$out/eval-$name.json" ] || { framestamp evaluate "$out/model" "$data/eval/manifest.jsonl" $filter \
                --limit 800 --json > "$out/eval-$name.json.tmp" && mv "$out/eval-$name.json.tmp" "$out/eval-$name.json"; }
        done
    done
}
length_study ood runs/data-ood 4 8 3 4
length_study ood8 runs/data-ood8 8 12 5 6
