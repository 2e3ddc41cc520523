#!/usr/bin/env bash
# Post-training pruning study: each base model (BASES, name:method:checkpoint; by default the dense start of the
# frontier sweep and the sweep's weakest NeuroPrune+ model at 54 heads, seed 1) pruned with no retraining by
# each method (METHODS) at each sparsity (SPARSITIES) of the weights its head masks kept, from CALIB_SENTENCES sentences of SUBSET;
# then each pruned model evaluated on the whole test split. Per run: RESULTS_DIR/prune/NAME.json (settings,
# sparsity per matrix, calibration errors, SparseLLM's objective, FFN output errors on held-out sentences,
# time, memory) and RESULTS_DIR/records/NAME.json (BLEU, tools.evaluate); NAME = BASE_METHOD_sSPARSITY.
# Each evaluation also keeps its hypotheses beside the records, RESULTS_DIR/text/NAME.hyp, and the test references
# once, RESULTS_DIR/text/test.ref (to be committed with the records: the paired bootstraps are recomputed from them).
# A run whose evaluation record exists is skipped.
# Then per base a bleu-vs-sparsity plot; per base and sparsity, sacrebleu's paired bootstrap of every method
# whose hypotheses exist against SIG_BASELINE (RESULTS_DIR/significance/BASE_sSPARSITY.json); and a frontier
# plot of every record (plus FRONTIER_EXTRA records).
# Usage: bash examples/iwslt14_de_en/post_prune.sh   (settings: the environment variables below; -h prints this)
set -euo pipefail

BASES=${BASES-"dense:dense:runs/offline_demo/dense/checkpoint_last.pt np54:neuroprune_plus:runs/frontier/np_plus_a1e-5_k54_s1/checkpoint_last.pt"}
METHODS=${METHODS-"magnitude wanda sparsegpt sparsellm"}
SPARSITIES=${SPARSITIES-"0.5 0.6 0.7 0.8"}  # 0.9 left every method near 0 BLEU on both bases (2026-12-01)
DATA_BIN=${DATA_BIN:-data/offline_de_en_libreoffice/data-bin40}
CALIB_SENTENCES=${CALIB_SENTENCES:-256}
SUBSET=${SUBSET:-train}
ITERATIONS=${ITERATIONS:-4}  # SparseLLM's alternating rounds, the first (SparseGPT) included
ACCEPTANCE_TEST=${ACCEPTANCE_TEST:-0}  # 1: SparseLLM with --acceptance-test (how its records before issue 27 were made)
HELDOUT_SENTENCES=${HELDOUT_SENTENCES:-256}  # each FFN block's output error is measured on these (0: off)
HELDOUT_SUBSET=${HELDOUT_SUBSET:-valid}
OUT_DIR=${OUT_DIR:-runs/post_prune}  # pruned checkpoints
RESULTS_DIR=${RESULTS_DIR:-examples/iwslt14_de_en/results/post_prune}
FRONTIER_EXTRA=${FRONTIER_EXTRA-}  # folder of more exact-zero records for the frontier plot (its dense.json left out; none by default)
SIG_BASELINE=${SIG_BASELINE:-sparsegpt}  # the method every other one is tested against, per base and sparsity
SIG_SAMPLES=${SIG_SAMPLES:-1000}  # bootstrap resamples
BEAM=${BEAM:-5}
MAX_PIECES=${MAX_PIECES:-40}  # also score the test pairs within the training length limit (0: off)
CPU=${CPU:-1}  # 1: prune and generate on CPU
TITLE=${TITLE:-"offline German-English corpus, narrow 108-head model"}
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
die() { echo "post_prune.sh: $*" >&2; exit 1; }
[[ -f "$DATA_BIN/dict.de.txt" ]] || die "DATA_BIN=$DATA_BIN has no dict.de.txt: run the main command (scripts/run_offline_demo.sh) first"
for base in $BASES; do
    IFS=: read -r bname bmethod checkpoint <<< "$base"
    [[ -n "$checkpoint" ]] || die "BASES entry '$base' is not name:method:checkpoint"
    [[ -f "$checkpoint" ]] || die "base model $bname: $checkpoint does not exist"
done
DEVICE=(); [[ "$CPU" == 1 ]] && DEVICE=(--cpu)
mkdir -p "$OUT_DIR" "$RESULTS_DIR"/{prune,records,text}
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
evaluate() {  # evaluate CHECKPOINT NAME METHOD: the record, RESULTS_DIR/text/NAME.hyp and (once) test.ref
    local text="$RESULTS_DIR/text"
    "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$1" --data-bin "$DATA_BIN" --name "$2" --method "$3" \
        --beam "$BEAM" --max-pieces "$MAX_PIECES" --out "$RESULTS_DIR/records/$2.json" --text-out "$text/$2" --overwrite "${DEVICE[@]}"
    [[ -f "$text/test.ref" ]] || cp "$text/$2.ref" "$text/test.ref"
    cmp -s "$text/$2.ref" "$text/test.ref" || die "$2: its test references differ from $text/test.ref"
    rm "$text/$2.ref"
}
significance() {  # significance BASE SPARSITY: every method with hypotheses against SIG_BASELINE
    local systems=() name
    for method in $SIG_BASELINE $METHODS; do
        name="$1_${method}_s$2"
        [[ -f "$RESULTS_DIR/text/$name.hyp" ]] || continue
        [[ " ${systems[*]} " == *" $method="* ]] && continue
        systems+=("$method=$RESULTS_DIR/text/$name.hyp")
    done
    if (( ${#systems[@]} < 2 )) || [[ "${systems[0]}" != "$SIG_BASELINE="* ]]; then
        echo "post_prune.sh: $1 at sparsity $2: no $SIG_BASELINE hypotheses or nothing to compare with, so no significance test"
        return
    fi
    step "paired bootstrap of $1 at sparsity $2 against $SIG_BASELINE"
    "$PYTHON" -m neuroprune.tools.significance --refs "$RESULTS_DIR/text/test.ref" "${systems[@]/#/--system=}" --samples "$SIG_SAMPLES" \
        --out "$RESULTS_DIR/significance/$1_s$2.json" --overwrite
}

all=()
has_dense=0
for base in $BASES; do
    IFS=: read -r bname bmethod checkpoint <<< "$base"
    [[ "$bmethod" == dense ]] && has_dense=1
    if [[ ! -f "$RESULTS_DIR/records/$bname.json" ]]; then
        step "evaluate base model $bname"
        evaluate "$checkpoint" "$bname" "$bmethod"
    fi
    records=("$RESULTS_DIR/records/$bname.json")
    for method in $METHODS; do
        for sparsity in $SPARSITIES; do
            name="${bname}_${method}_s$sparsity"
            if [[ ! -f "$RESULTS_DIR/records/$name.json" ]]; then
                if [[ ! -f "$OUT_DIR/$name.pt" || ! -f "$RESULTS_DIR/prune/$name.json" ]]; then
                    step "prune $bname with $method to sparsity $sparsity"
                    iterations=(); [[ "$method" == sparsellm ]] && iterations=(--iterations "$ITERATIONS")
                    [[ "$method" == sparsellm && "$ACCEPTANCE_TEST" == 1 ]] && iterations+=(--acceptance-test)
                    "$PYTHON" -m neuroprune_fairseq.tools.post_prune --checkpoint "$checkpoint" --data-bin "$DATA_BIN" \
                        --method "$method" --sparsity "$sparsity" --calib-sentences "$CALIB_SENTENCES" --subset "$SUBSET" \
                        --heldout-sentences "$HELDOUT_SENTENCES" --heldout-subset "$HELDOUT_SUBSET" \
                        "${iterations[@]}" --out "$OUT_DIR/$name.pt" --record "$RESULTS_DIR/prune/$name.json" --overwrite "${DEVICE[@]}"
                fi
                step "evaluate $name"
                evaluate "$OUT_DIR/$name.pt" "$name" "$method"
            fi
            records+=("$RESULTS_DIR/records/$name.json")
        done
    done
    step "plot BLEU vs sparsity for $bname"
    "$PYTHON" -m neuroprune.tools.plots bleu-vs-sparsity "${records[@]}" --out "$RESULTS_DIR/bleu-vs-sparsity-$bname.png" \
        --title "Post-training pruning of $bname: BLEU vs weight sparsity"$'\n'"$TITLE"
    all+=("${records[@]}")
    mkdir -p "$RESULTS_DIR/significance"
    for sparsity in $SPARSITIES; do significance "$bname" "$sparsity"; done
done

extra=()
if [[ -n "$FRONTIER_EXTRA" && -d "$FRONTIER_EXTRA" ]]; then
    for record in "$FRONTIER_EXTRA"/*.json; do [[ -f "$record" && "$record" != */dense.json ]] && extra+=("$record"); done
fi
if [[ "$has_dense" == 1 ]]; then
    step "frontier plot with the post-trained runs"
    "$PYTHON" -m neuroprune.tools.plots frontier "${all[@]}" "${extra[@]}" --out "$RESULTS_DIR/frontier.png" --title "$TITLE"
else
    echo "post_prune.sh: no base of method dense (the frontier's BLEU reference), so no frontier plot"
fi
echo
echo "post_prune.sh: finished in $(( ($(date +%s) - START) / 60 )) min; records in $RESULTS_DIR"
