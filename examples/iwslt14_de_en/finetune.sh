#!/usr/bin/env bash
# Stage 2 of the paper's MT recipe: fine-tune the dense PRETRAINED checkpoint with one pruning method.
# Every method uses the same data, architecture, optimizer and epochs; they differ only in these flags:
#   METHOD=dense       the dense control: plain label-smoothed cross entropy, no penalty, no pruning
#   METHOD=neuroprune  penalties (ALPHA, BETA) every step, redundant-head elimination after every epoch
#                      at THETA, or aiming at BUDGET heads (theta chosen per pass) when BUDGET is set;
#                      THETA= (empty) and no BUDGET: penalties only; the pass's variant: SIMILARITY, KEEP, FOLD
#                      (--np-similarity/--np-keep/--np-fold; the paper's by default)
#   METHOD=neuroprune_plus  NeuroPrune with the pass variant chosen by the one-shot harness on the validation
#                      split (PLUS_PASS: l_inf similarity, the most important head of a group stays, data-aware fold)
#   METHOD=l1          the l1 baseline: plain l1 (ALPHA, BETA) on the same matrices; with BUDGET, heads go by
#                      NeuroPrune+'s pass (PLUS_PASS), so that l1 and NeuroPrune+ differ only in the penalty
#   METHOD=dsp         DSP (--task dsp_translation): gates learn for DSP_ANNEAL_UPDATES updates (DSP_MODE=joint:
#                      with the weights; pipelined: weights untouched), then the model trains under the fixed
#                      hard top-BUDGET mask (other DSP_* variables: the authors' defaults)
#   METHOD=michel      Michel et al. importance pruning of PRETRAINED to BUDGET heads, then fine-tuning
#                      with those masks fixed
# Weight sparsity during training, with any METHOD (off when empty): GMP_SPARSITY (gradual magnitude pruning to
# this share of each matrix's active weights, cubic schedule from GMP_START to GMP_END updates, every
# GMP_INTERVAL), KEEP_ZEROS=1 (weights that are exactly zero stay zero: fine-tuning a pruned model with its mask
# fixed), PROX (l1 proximal step of lr x PROX after every update).
# The first launch starts from PRETRAINED with a fresh optimizer and epoch count (--finetune-from-model);
# a later launch with the same SAVE_DIR resumes from its checkpoint_last.pt.
# Usage: METHOD=dsp BUDGET=54 DATA_BIN=... PRETRAINED=runs/dense/checkpoint_last.pt SAVE_DIR=runs/dsp54 bash examples/iwslt14_de_en/finetune.sh [extra fairseq-train args]
set -euo pipefail

METHOD=${METHOD:-neuroprune}
BUDGET=${BUDGET:-}
DATA_BIN=${DATA_BIN:-data/offline_de_en/data-bin}
PRETRAINED=${PRETRAINED:-runs/dense/checkpoint_best.pt}
SAVE_DIR=${SAVE_DIR:-runs/$METHOD${BUDGET}}
ARCH=${ARCH:-neuroprune_iwslt_de_en_narrow}
ALPHA=${ALPHA:-1e-4}
BETA=${BETA:-1e-2}
THETA=${THETA-0.3}  # set to empty for penalties only (no head elimination)
EPS=${EPS:-1e-4}
BUDGET_PASSES=${BUDGET_PASSES:-1}
EXACT_BUDGET=${EXACT_BUDGET:-1}  # 1: each budget pass keeps exactly its scheduled head count (--np-exact-budget)
PRUNE_START_EPOCH=${PRUNE_START_EPOCH:-1}
SIMILARITY=${SIMILARITY:-linf}  # linf | linf_scaled | output
KEEP=${KEEP:-paper}             # paper | importance
FOLD=${FOLD:-paper}             # paper | none | data
PLUS_PASS="linf importance data"  # METHOD=neuroprune_plus: SIMILARITY KEEP FOLD (examples/iwslt14_de_en/README.md, one-shot)
DSP_MODE=${DSP_MODE:-joint}  # joint | pipelined
DSP_ANNEAL_UPDATES=${DSP_ANNEAL_UPDATES:-250}  # updates of gate learning; the mask is fixed after them
DSP_LR=${DSP_LR:-0.2}
DSP_WEIGHT_DECAY=${DSP_WEIGHT_DECAY:-1e-4}
DSP_TEMP_INIT=${DSP_TEMP_INIT:-0.1}
DSP_TEMP_FINAL=${DSP_TEMP_FINAL:-1e-8}
DSP_INIT=${DSP_INIT:-xavier}  # xavier | zeros
DSP_PER_MODULE=${DSP_PER_MODULE:-0}
DSP_STRAIGHT_THROUGH=${DSP_STRAIGHT_THROUGH:-0}
MICHEL_STEPS=${MICHEL_STEPS:-1}
GMP_SPARSITY=${GMP_SPARSITY:-}
GMP_START=${GMP_START:-0}
GMP_END=${GMP_END:-}
GMP_INTERVAL=${GMP_INTERVAL:-10}
KEEP_ZEROS=${KEEP_ZEROS:-0}
PROX=${PROX:-}
EPOCH_CHECKPOINTS=${EPOCH_CHECKPOINTS:-0}  # 1: also keep checkpointN.pt of every epoch (e.g. to prune after epoch 1)
MAX_EPOCH=${MAX_EPOCH:-2}
LR=${LR:-5e-4}
MAX_TOKENS=${MAX_TOKENS:-2048}
DROPOUT=${DROPOUT:-0.1}
LABEL_SMOOTHING=${LABEL_SMOOTHING:-0.1}
SEED=${SEED:-1}
DEVICE_FLAGS=${DEVICE_FLAGS:---cpu}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-.venv/bin/fairseq-train}
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
die() { echo "finetune.sh: $*" >&2; exit 1; }
[[ -f "$PRETRAINED" ]] || die "PRETRAINED=$PRETRAINED does not exist: run train_dense.sh first"
[[ -f "$DATA_BIN/dict.de.txt" ]] || die "DATA_BIN=$DATA_BIN has no dict.de.txt: run scripts/binarize.sh first"
[[ -z "$GMP_SPARSITY" || -n "$GMP_END" ]] || die "GMP_SPARSITY needs GMP_END (the update at which it is reached)"
needs_budget() { [[ -n "$BUDGET" ]] || die "METHOD=$METHOD needs BUDGET (heads to keep)"; }

START="$PRETRAINED"
TASK=neuroprune_translation
budget_pass_flags() {  # the elimination pass's variant and, with BUDGET, its budget flags (else THETA's)
    echo --np-prune-start-epoch "$PRUNE_START_EPOCH" --np-similarity "$SIMILARITY" --np-keep "$KEEP" --np-fold "$FOLD"
    if [[ -n "$BUDGET" ]]; then
        echo --np-head-budget "$BUDGET" --np-budget-passes "$BUDGET_PASSES"
        [[ "$EXACT_BUDGET" == 1 ]] && echo --np-exact-budget
    elif [[ -n "$THETA" ]]; then echo --np-theta "$THETA"; fi
    return 0
}
case "$METHOD" in
    dense)
        METHOD_FLAGS=() ;;
    neuroprune|neuroprune_plus)
        [[ "$METHOD" == neuroprune_plus ]] && read -r SIMILARITY KEEP FOLD <<< "$PLUS_PASS"
        # shellcheck disable=SC2207
        METHOD_FLAGS=(--np-alpha "$ALPHA" --np-beta "$BETA" $(budget_pass_flags)) ;;
    l1)
        METHOD_FLAGS=(--np-penalty l1 --np-alpha "$ALPHA" --np-beta "$BETA")
        if [[ -n "$BUDGET" ]]; then
            read -r SIMILARITY KEEP FOLD <<< "$PLUS_PASS"
            # shellcheck disable=SC2207
            METHOD_FLAGS+=($(budget_pass_flags))
        fi ;;
    dsp)
        needs_budget
        TASK=dsp_translation
        METHOD_FLAGS=(--np-dsp-heads "$BUDGET" --np-dsp-mode "$DSP_MODE" --np-dsp-anneal-updates "$DSP_ANNEAL_UPDATES"
                      --np-dsp-lr "$DSP_LR" --np-dsp-weight-decay "$DSP_WEIGHT_DECAY" --np-dsp-temp-init "$DSP_TEMP_INIT"
                      --np-dsp-temp-final "$DSP_TEMP_FINAL" --np-dsp-init "$DSP_INIT" --np-dsp-seed "$SEED")
        [[ "$DSP_PER_MODULE" == 1 ]] && METHOD_FLAGS+=(--np-dsp-per-module)
        [[ "$DSP_STRAIGHT_THROUGH" == 1 ]] && METHOD_FLAGS+=(--np-dsp-straight-through) ;;
    michel)
        needs_budget
        START="$SAVE_DIR/michel_pruned.pt"
        METHOD_FLAGS=()
        if [[ ! -f "$START" ]]; then
            DEVICE_ARG=(); [[ "$DEVICE_FLAGS" == *--cpu* ]] && DEVICE_ARG=(--cpu)
            "$PYTHON" -m neuroprune_fairseq.tools.michel --checkpoint "$PRETRAINED" --data-bin "$DATA_BIN" \
                --heads "$BUDGET" --steps "$MICHEL_STEPS" --out "$START" "${DEVICE_ARG[@]}"
        fi ;;
    *) die "METHOD=$METHOD is not one of dense, neuroprune, neuroprune_plus, l1, dsp, michel" ;;
esac

[[ -n "$GMP_SPARSITY" ]] && METHOD_FLAGS+=(--np-gmp-sparsity "$GMP_SPARSITY" --np-gmp-start-update "$GMP_START"
                                         --np-gmp-end-update "$GMP_END" --np-gmp-interval "$GMP_INTERVAL")
[[ "$KEEP_ZEROS" == 1 ]] && METHOD_FLAGS+=(--np-keep-zeros)
[[ -n "$PROX" ]] && METHOD_FLAGS+=(--np-prox-strength "$PROX")

# shellcheck disable=SC2086
"$FAIRSEQ_TRAIN" "$DATA_BIN" --user-dir neuroprune_fairseq --task "$TASK" \
    --source-lang de --target-lang en \
    --arch "$ARCH" --share-all-embeddings --encoder-normalize-before --decoder-normalize-before \
    --dropout "$DROPOUT" \
    --criterion neuroprune_label_smoothed_cross_entropy --label-smoothing "$LABEL_SMOOTHING" --np-eps "$EPS" \
    "${METHOD_FLAGS[@]}" --finetune-from-model "$START" \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr "$LR" --lr-scheduler fixed \
    --max-tokens "$MAX_TOKENS" --max-epoch "$MAX_EPOCH" --seed "$SEED" \
    --save-dir "$SAVE_DIR" $([[ "$EPOCH_CHECKPOINTS" == 1 ]] || echo --no-epoch-checkpoints) --log-format simple --log-interval 50 \
    $DEVICE_FLAGS "$@"
