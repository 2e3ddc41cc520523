#!/usr/bin/env bash
# What NeuroPrune's sparsity buys: BLEU against real weight sparsity at a fixed head budget, for sparse training
# (NeuroPrune's paper pass, NeuroPrune+, the l1 penalty, each at every strength in STRENGTHS) and gradual magnitude
# pruning (GMP_TARGETS) on Michel's and DSP's heads, with the head-only models and the dense control as references.
# The seed study's protocol: every run fine-tunes the dense PRETRAINED checkpoint for EPOCHS epochs (the same
# data, optimizer, learning rate and updates), its heads fixed by the end of the first SELECT_EPOCHS epoch(s).
# Every model is evaluated with |w| < ZERO_BELOW zeroed in q/k/v/out/fc1/fc2, so its sparsity is exact zeros of
# the model that was scored; the test record also scores the model as stored. Runs (NAME = GROUP_kBUDGET_sSEED):
# per budget in BUDGETS the REFERENCES (michel, dsp_joint, and dense_sSEED), then the SWEEPS, in their order,
# np_plus_STRENGTH, gmp_michel_gTARGET, l1_STRENGTH, np_STRENGTH, gmp_dsp_gTARGET; at the first budget also
# alpha-only and beta-only runs of NeuroPrune+ at SPLIT_STRENGTH and the paper's own mode (no budget, theta in THETAS) at that strength.
# Records, hypotheses and log lines go to RESULTS_DIR (COMMIT=1 commits each run's as soon as they exist); a run
# whose records exist is skipped, so the sweep resumes on any machine. The summary writes, from the records only,
# RESULTS_DIR/results.md (a row per run), per budget sacrebleu's paired bootstrap of its first seed's runs and the dense control
# against its Michel run (significance-kBUDGET.json, Holm over the budget), the paper's heads-vs-sparsity frontier
# of the runs within 1 BLEU of the dense control, per budget the BLEU-vs-sparsity and BLEU-vs-parameters fronts, and
# for the MATCHED pairs (two methods at matched sparsity, run over SEEDS) mean and spread over seeds and the seed-pooled
# paired bootstrap of each pair, Holm over a budget's pairs (matched.md, matched.json).
# PHASES "posttrain": post-training pruning (tools.post_prune) of the first budget's reference runs (POST_BASES)
# by each of POST_METHODS at each of POST_SPARSITIES, as trained (NAME = METHOD-SPARSITY_BASE); and of the
# POST_FT_BASES by POST_FT_METHODS after their first epoch, then fine-tuned for the other epoch(s) with the zeros
# fixed, so that they train the same updates as every other run (NAME = METHOD-SPARSITY-ft_BASE).
# Usage: bash examples/iwslt14_de_en/frontier.sh [extra fairseq-train args]   (env overrides below; -h prints this)
set -euo pipefail

STUDY_DIR=${STUDY_DIR:-runs/frontier}
RESULTS_DIR=${RESULTS_DIR:-examples/iwslt14_de_en/results/frontier}
DATA_BIN=${DATA_BIN:-data/offline_de_en_libreoffice/data-bin40}
PRETRAINED=${PRETRAINED:-runs/offline_demo/dense/checkpoint_last.pt}
EPOCHS=${EPOCHS:-2}
SELECT_EPOCHS=${SELECT_EPOCHS:-1}
SEEDS=${SEEDS:-1}
BUDGETS=${BUDGETS:-"54 81"}
STRENGTHS=${STRENGTHS:-"a1e-5:1e-5:1e-4 a1e-4:1e-4:1e-3 a2e-4:2e-4:2e-3 a4e-4:4e-4:4e-3 a8e-4:8e-4:8e-3 a1.6e-3:1.6e-3:1.6e-2 a3.2e-3:3.2e-3:3.2e-2"}  # name:alpha:beta
SWEEPS=${SWEEPS-"np_plus gmp_michel l1 np gmp_dsp"}  # the sweeps to run per budget, in this order ("": none, only the REFERENCES)
REFERENCES=${REFERENCES-"michel dsp_joint dense"}  # the references per budget and seed (dense: the control, per seed; the first seed's always runs, it gives the update count)
GMP_TARGETS=${GMP_TARGETS:-"0.3 0.5 0.7 0.85"}  # share of each matrix's active weights at zero
MATCHED=${MATCHED-"np_plus_a2e-4:gmp_michel_g0.14 np_plus_a4e-4:gmp_michel_g0.43 np_plus_a4e-4:l1_a1e-5"}  # A:B run series at matched sparsity, compared over all their seeds
GMP_END_EPOCHS=${GMP_END_EPOCHS:-1.333}  # the cubic schedule reaches its target after this many epochs (from update 0)
GMP_STEPS=${GMP_STEPS:-12}  # pruning steps of the schedule
SPLIT_STRENGTH=${SPLIT_STRENGTH-a4e-4}  # NeuroPrune+ with only alpha, then only beta, of this strength ("": none)
THETAS=${THETAS-"0.2 0.3 0.4"}  # the paper's own mode at SPLIT_STRENGTH ("": none)
POST_BASES=${POST_BASES-"michel dsp_joint np_plus_a1e-5 dense"}  # run groups of the first budget (dense: the control)
POST_METHODS=${POST_METHODS-"magnitude sparsegpt"}
POST_SPARSITIES=${POST_SPARSITIES-"0.5 0.7"}  # share of each matrix's active weights (tools.post_prune --sparsity)
POST_FT_BASES=${POST_FT_BASES-"michel"}
POST_FT_METHODS=${POST_FT_METHODS-"magnitude sparsegpt"}
CALIB_SENTENCES=${CALIB_SENTENCES:-256}  # post-training calibration sentences of the training split
UPDATES_PER_EPOCH=${UPDATES_PER_EPOCH:-}  # empty: read from the first dense control's log
ZERO_BELOW=${ZERO_BELOW-1e-4}  # the evaluated model has |w| below this zeroed (the plugin's --np-eps)
BEAM=${BEAM:-5}
SIG_SAMPLES=${SIG_SAMPLES:-1000}  # paired-bootstrap resamples of the summary (as tools.cited_pvalues recomputes; p >= 1/(SIG_SAMPLES+1))
LANES=${LANES:-2}
THREADS=${THREADS:-1}
COMMIT=${COMMIT:-0}
DEVICE_FLAGS=${DEVICE_FLAGS:---cpu}
PHASES=${PHASES:-"train evaluate summary"}  # also: posttrain (after train and evaluate)
SEC_PER_RUN=${SEC_PER_RUN-960}  # one run of 486 updates on one thread beside another lane (a run with its evaluations took 16-19 min on a 2-core AMD EPYC, 2026-12-04)
SEC_PER_EVAL=${SEC_PER_EVAL:-65}
TITLE=${TITLE:-"offline German-English corpus, narrow 108-head model"}
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
die() { echo "frontier.sh: $*" >&2; exit 1; }
# shellcheck source=examples/iwslt14_de_en/runs_lib.sh
source examples/iwslt14_de_en/runs_lib.sh
check_settings
for g in $SWEEPS; do [[ " np_plus gmp_michel l1 np gmp_dsp " == *" $g "* ]] || die "SWEEPS entry '$g' is not one of np_plus gmp_michel l1 np gmp_dsp"; done
for g in $REFERENCES; do [[ " michel dsp_joint dense " == *" $g "* ]] || die "REFERENCES entry '$g' is not one of michel dsp_joint dense"; done
for g in $MATCHED; do [[ "$g" =~ ^[^:]+:[^:]+$ ]] || die "MATCHED entry '$g' is not A:B (two run series, e.g. np_plus_a2e-4:gmp_michel_g0.14)"; done
for g in $GMP_TARGETS; do [[ "$g" =~ ^0?\.[0-9]+$ ]] || die "GMP_TARGETS entry '$g' is not a share in [0, 1)"; done
if has_phase posttrain && ! has_phase evaluate; then
    echo "frontier.sh: WARNING PHASES='$PHASES' has posttrain without evaluate: models are pruned but get no records" >&2
fi
GEN_DEVICE=(); [[ "$DEVICE_FLAGS" == *--cpu* ]] && GEN_DEVICE=(--cpu)
mkdir -p "$STUDY_DIR" "$RESULTS_DIR"/{records,valid,text,logs}
EXTRA_ARGS=("$@")
FIRST_SEED=${SEEDS%% *}
FIRST_BUDGET=${BUDGETS%% *}

strength() { local s n a b; for s in $STRENGTHS; do IFS=: read -r n a b <<< "$s"; [[ "$n" == "$1" ]] && { echo "$a $b"; return; }; done; die "no strength '$1' in STRENGTHS"; }
sweep() {  # sweep GROUP METHOD LABEL BUDGET SEED: one run per strength; the weakest keeps its epoch-1 checkpoint too
    local s a b keep=EPOCH_CHECKPOINTS=1
    for s in $STRENGTHS; do
        read -r a b <<< "$(strength "${s%%:*}")"
        echo "${1}_${s%%:*}_k$4_s$5 $2 $4 $5 ALPHA=$a BETA=$b LABEL=$3 $keep"; keep=""
    done
}
gmp() {  # gmp BASE BUDGET SEED VARS: one run per target
    local g; for g in $GMP_TARGETS; do echo "gmp_$1_g${g}_k$2_s$3 $1 $2 $3 LABEL=gmp_$1 GMP_SPARSITY=$g GMP_START=0 GMP_END=$GMP_END GMP_INTERVAL=$GMP_INTERVAL ${4:-}"; done
}

has_reference() { [[ " $REFERENCES " == *" $1 "* ]]; }
budget_runs() {  # budget_runs BUDGET SEED: the REFERENCES, then the SWEEPS (penalty strengths, GMP on a head set)
    local group
    if has_reference michel; then echo "michel_k$1_s$2 michel $1 $2 EPOCH_CHECKPOINTS=1"; fi
    if has_reference dsp_joint; then echo "dsp_joint_k$1_s$2 dsp $1 $2 DSP_MODE=joint DSP_ANNEAL_UPDATES=$ANNEAL EPOCH_CHECKPOINTS=1"; fi
    for group in $SWEEPS; do
        case $group in
            np_plus) sweep np_plus neuroprune_plus neuroprune_plus "$1" "$2" ;;
            l1) sweep l1 l1 l1 "$1" "$2" ;;
            np) sweep np neuroprune neuroprune "$1" "$2" ;;
            gmp_michel) gmp michel "$1" "$2" ;;
            gmp_dsp) gmp dsp "$1" "$2" "DSP_MODE=joint DSP_ANNEAL_UPDATES=$ANNEAL" ;;
        esac
    done
}
split_runs() {  # NeuroPrune+ with one penalty alone, and the paper's own mode, at SPLIT_STRENGTH (first budget and seed)
    [[ -n "$SPLIT_STRENGTH" ]] || return 0
    local a b theta; read -r a b <<< "$(strength "$SPLIT_STRENGTH")"
    echo "np_plus_alpha-${SPLIT_STRENGTH}_k${FIRST_BUDGET}_s$FIRST_SEED neuroprune_plus $FIRST_BUDGET $FIRST_SEED ALPHA=$a BETA=0 LABEL=neuroprune_plus_alpha_only"
    echo "np_plus_beta-${SPLIT_STRENGTH}_k${FIRST_BUDGET}_s$FIRST_SEED neuroprune_plus $FIRST_BUDGET $FIRST_SEED ALPHA=0 BETA=$b LABEL=neuroprune_plus_beta_only"
    for theta in $THETAS; do echo "np_theta${theta}_${SPLIT_STRENGTH}_s$FIRST_SEED neuroprune - $FIRST_SEED ALPHA=$a BETA=$b THETA=$theta LABEL=neuroprune_theta"; done
}
# In order of use: the first budget's runs (seed by seed), the split and paper-mode runs, then the other budgets.
sweep_runs() {
    local seed budget
    for seed in $SEEDS; do
        if [[ "$seed" != "$FIRST_SEED" ]] && has_reference dense; then echo "dense_s$seed dense - $seed EPOCH_CHECKPOINTS=1"; fi
        budget_runs "$FIRST_BUDGET" "$seed"
    done
    split_runs
    for budget in ${BUDGETS#"$FIRST_BUDGET"}; do for seed in $SEEDS; do budget_runs "$budget" "$seed"; done; done
}
post_runs() {  # post_runs BASES METHODS FT: a run per base, method and sparsity; with FT=1 from the epoch-SELECT_EPOCHS checkpoint
    local base run budget method sparsity
    for base in $1; do
        if [[ "$base" == dense ]]; then run="dense_s$FIRST_SEED" budget=-; else run="${base}_k${FIRST_BUDGET}_s$FIRST_SEED" budget=$FIRST_BUDGET; fi
        for method in $2; do for sparsity in $POST_SPARSITIES; do
            if [[ "$3" == 1 ]]; then
                echo "$method-$sparsity-ft_$run $method+ft@$base $budget $FIRST_SEED $STUDY_DIR/$run/checkpoint$SELECT_EPOCHS.pt $method $sparsity 1"
            else
                echo "$method-${sparsity}_$run $method@$base $budget $FIRST_SEED $STUDY_DIR/$run/checkpoint_last.pt $method $sparsity 0"
            fi
        done; done
    done
}
all_post_runs() { post_runs "$POST_BASES" "$POST_METHODS" 0; post_runs "$POST_FT_BASES" "$POST_FT_METHODS" 1; }

# The estimate counts the runs of these settings whose records do not exist yet (names do not depend on the update
# counts below, which the dense control's log gives: placeholders until then).
ANNEAL=later GMP_INTERVAL=later GMP_END=later
mapfile -t PLANNED < <({ echo "dense_s$FIRST_SEED"; sweep_runs; if has_phase posttrain; then all_post_runs; fi; } | cut -d' ' -f1)
print_estimate "${#PLANNED[@]}" "$SEC_PER_RUN" "$SEC_PER_EVAL" 3 "${PLANNED[@]}"
check_pretrained

# The first dense control gives the updates per epoch: DSP's anneal spans SELECT_EPOCHS of them, GMP's schedule GMP_END_EPOCHS.
run_one "dense_s$FIRST_SEED dense - $FIRST_SEED EPOCH_CHECKPOINTS=1"
if [[ -z "$UPDATES_PER_EPOCH" ]]; then
    UPDATES_PER_EPOCH=$(grep -oP '\| train \| epoch 001 \|.*num_updates \K[0-9]+' "$RESULTS_DIR/logs/dense_s$FIRST_SEED.txt" | head -1) \
        || die "no epoch-1 update count in $RESULTS_DIR/logs/dense_s$FIRST_SEED.txt: set UPDATES_PER_EPOCH"
fi
ANNEAL=$(( SELECT_EPOCHS * UPDATES_PER_EPOCH ))
GMP_INTERVAL=$(awk -v u="$UPDATES_PER_EPOCH" -v e="$GMP_END_EPOCHS" -v n="$GMP_STEPS" 'BEGIN { printf "%d", u * e / n }')
GMP_END=$(( GMP_INTERVAL * GMP_STEPS ))
(( GMP_INTERVAL >= 1 )) || die "GMP_END_EPOCHS=$GMP_END_EPOCHS over GMP_STEPS=$GMP_STEPS leaves less than one update per step"
echo "frontier.sh: $UPDATES_PER_EPOCH updates per epoch; DSP anneals over $ANNEAL; GMP prunes every $GMP_INTERVAL updates up to $GMP_END"

mapfile -t RUNS < <(sweep_runs)
run_all "${RUNS[@]}"

post_run() {  # post_run "NAME LABEL BUDGET SEED BASE_CHECKPOINT METHOD SPARSITY FT": prune, then run_one fine-tunes (FT=1) or only evaluates
    local name label budget seed base method sparsity ft dir
    read -r name label budget seed base method sparsity ft <<< "$1"
    dir="$STUDY_DIR/$name"
    finished "$name" && return 0
    local target="$dir/checkpoint_last.pt"; [[ "$ft" == 1 ]] && target="$dir/pruned.pt"
    if [[ ! -f "$target" ]]; then
        [[ -f "$base" ]] || die "$name: its base $base does not exist (train the reference runs first)"
        step "prune $base with $method to $sparsity -> $target"
        mkdir -p "$dir" "$RESULTS_DIR/prune"
        OMP_NUM_THREADS=$THREADS "$PYTHON" -m neuroprune_fairseq.tools.post_prune --checkpoint "$base" --data-bin "$DATA_BIN" \
            --method "$method" --sparsity "$sparsity" --calib-sentences "$CALIB_SENTENCES" --out "$target" \
            --record "$RESULTS_DIR/prune/$name.json" --overwrite "${GEN_DEVICE[@]}" > "$dir/prune.log" 2>&1 \
            || { tail -20 "$dir/prune.log" >&2; die "pruning $name failed (log: $dir/prune.log)"; }
        [[ "$ft" == 1 ]] || touch "$dir/done"
    fi
    if [[ "$ft" == 1 ]]; then
        run_one "$name dense $budget $seed PRETRAINED=$target KEEP_ZEROS=1 MAX_EPOCH=$(( EPOCHS - SELECT_EPOCHS )) LABEL=$label"
    else
        run_one "$name dense $budget $seed LABEL=$label"
    fi
}

if has_phase posttrain; then
    mapfile -t POST < <(all_post_runs)
    RUNNER=post_run run_all "${POST[@]}"
fi

if has_phase summary; then
    step "summary -> $RESULTS_DIR"
    mapfile -t all < <(ls "$RESULTS_DIR"/records/*.json 2>/dev/null)
    (( ${#all[@]} > 0 )) || die "no records in $RESULTS_DIR/records yet"
    sig_files=()
    for budget in $BUDGETS; do  # per budget with records: its fronts, and its runs (and the dense control) against its Michel run
        mapfile -t runs < <(grep -l "\"budget\": $budget," "${all[@]}")
        (( ${#runs[@]} > 0 )) || continue
        for kind in sparsity-front params-front; do
            "$PYTHON" -m neuroprune.tools.plots "$kind" "${all[@]}" --budget "$budget" --references dense,michel,dsp \
                --out "$RESULTS_DIR/$kind-k$budget.png" --title "$TITLE, $budget heads"
        done
        base="michel_k${budget}_s$FIRST_SEED"  # the first seed's runs against it (the MATCHED pairs compare seeds)
        [[ -f "$RESULTS_DIR/text/$base.hyp" ]] || continue
        systems=(--system "$base=$RESULTS_DIR/text/$base.hyp")
        for record in "${runs[@]}" "$RESULTS_DIR/records/dense_s$FIRST_SEED.json"; do
            name=$(basename "$record" .json)
            [[ "$name" != "$base" && "$name" == *_s$FIRST_SEED && -f "$RESULTS_DIR/text/$name.hyp" ]] && systems+=(--system "$name=$RESULTS_DIR/text/$name.hyp")
        done
        (( ${#systems[@]} > 2 )) || continue
        "$PYTHON" -m neuroprune.tools.significance --refs "$RESULTS_DIR/text/test.ref" "${systems[@]}" \
            --samples "$SIG_SAMPLES" --out "$RESULTS_DIR/significance-k$budget.json" --overwrite > /dev/null
        sig_files+=(--significance "$RESULTS_DIR/significance-k$budget.json")
    done
    "$PYTHON" -m neuroprune.tools.frontier_table "${all[@]}" --out-md "$RESULTS_DIR/results.md" "${sig_files[@]}" --overwrite
    pairs=() matched=()  # the MATCHED pairs at each budget where both series have records: seed-pooled bootstrap, Holm over a budget's pairs
    for pair in $MATCHED; do
        for budget in $BUDGETS; do
            mapfile -t a < <(ls "$RESULTS_DIR/records/${pair%%:*}_k${budget}"_s*.json 2>/dev/null)
            mapfile -t b < <(ls "$RESULTS_DIR/records/${pair#*:}_k${budget}"_s*.json 2>/dev/null)
            (( ${#a[@]} > 0 && ${#b[@]} > 0 )) || continue
            [[ " ${pairs[*]} " == *" $pair "* ]] || pairs+=("$pair")
            matched+=("${a[@]}" "${b[@]}")
        done
    done
    if (( ${#pairs[@]} > 0 )); then
        mapfile -t matched < <(printf '%s\n' "${matched[@]}" | sort -u)  # a series in two pairs once
        pairs_list="${pairs[*]}"
        "$PYTHON" -m neuroprune.tools.seed_table "${matched[@]}" --text-dir "$RESULTS_DIR/text" --pairs "${pairs_list// /,}" \
            --samples "$SIG_SAMPLES" --out-md "$RESULTS_DIR/matched.md" --out-json "$RESULTS_DIR/matched.json" --overwrite > /dev/null
    fi
    # the paper's view (Fig. 6 right): heads kept against sparsity, for the runs within 1 BLEU of the dense control
    "$PYTHON" -m neuroprune.tools.plots frontier "${all[@]}" --bleu-tolerance 1 --out "$RESULTS_DIR/frontier.png" --title "$TITLE"
fi
echo
echo "frontier.sh: finished the phases '$PHASES' in $(( ($(date +%s) - START) / 60 )) min"
