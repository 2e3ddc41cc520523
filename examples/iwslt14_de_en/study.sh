#!/usr/bin/env bash
# The comparison study on the offline German-English corpus: one dense pretraining (the README's main
# command, scripts/run_offline_demo.sh), then from that checkpoint, with the same fine-tuning epochs:
#   NeuroPrune at head budgets {none (penalties only), 81, 54, 27} x two penalty strengths,
#   l1 at the same two strengths, DSP at K in {81, 54, 27}, Michel importance at {81, 54, 27};
# then for every run: evaluation (record), topology report, export, inference benchmark; finally the
# results table and the four plots. Resumable: a step whose output exists and is newer than its inputs is
# skipped, so results committed in the repository are redone by a fresh clone's new training.
# Usage: bash examples/iwslt14_de_en/study.sh        (env overrides below; PHASES selects steps; -h for this text)
set -euo pipefail

STUDY_DIR=${STUDY_DIR:-runs/study}
RESULTS_DIR=${RESULTS_DIR:-examples/iwslt14_de_en/results/study}
DEMO_DIR=${DEMO_DIR:-runs/offline_demo}
DATA_BIN=${DATA_BIN:-data/offline_de_en_libreoffice/data-bin40}
PRETRAINED=${PRETRAINED:-$DEMO_DIR/dense/checkpoint_last.pt}
EPOCHS=${EPOCHS:-1}
STRENGTHS=${STRENGTHS-"weak:1e-5:1e-4 strong:1e-4:1e-3"}  # name:alpha:beta
NP_BUDGETS=${NP_BUDGETS-"none 81 54 27"}
DSP_BUDGETS=${DSP_BUDGETS-"81 54 27"}
MICHEL_BUDGETS=${MICHEL_BUDGETS-"81 54 27"}
DSP_ANNEAL_UPDATES=${DSP_ANNEAL_UPDATES:-200}
BEAM=${BEAM:-5}
BENCH_REPS=${BENCH_REPS:-1}
BENCH_THREADS=${BENCH_THREADS:-1}  # CPU threads per benchmarked generation (1: steadiest on a shared machine)
PHASES=${PHASES:-"pretrain train evaluate export bench summary"}
SEC_PER_EPOCH=${SEC_PER_EPOCH:-180}  # measured: 243 updates at ~1.45 updates/s on the 2-core machine
SEC_PER_EVAL=${SEC_PER_EVAL:-35}     # measured: beam-5 generation of the 1,500 test sentences, ~26-30 s
SEC_MAIN_COMMAND=${SEC_MAIN_COMMAND:-1380}  # the main command (its dense model), when PRETRAINED is missing
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,8p "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
die() { echo "study.sh: $*" >&2; exit 1; }
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
# stale OUT IN...: OUT is missing or older than one of the inputs (then the step that writes OUT runs).
stale() { local out=$1; shift; [[ ! -f "$out" ]] && return 0; local in; for in in "$@"; do [[ "$in" -nt "$out" ]] && return 0; done; return 1; }

# The run list: "name method budget alpha beta" (budget "-" = none).
RUNS=()
for strength in $STRENGTHS; do
    IFS=: read -r sname alpha beta <<< "$strength"
    for budget in $NP_BUDGETS; do
        if [[ "$budget" == none ]]; then RUNS+=("np_pen_$sname neuroprune - $alpha $beta")
        else RUNS+=("np_k${budget}_$sname neuroprune $budget $alpha $beta"); fi
    done
    RUNS+=("l1_$sname l1 - $alpha $beta")
done
for budget in $DSP_BUDGETS; do RUNS+=("dsp_k$budget dsp $budget 0 0"); done
for budget in $MICHEL_BUDGETS; do RUNS+=("michel_k$budget michel $budget 0 0"); done

# Generation runs: evaluation of every run and the dense model, and 3 models per benchmark.
estimate=$(( ${#RUNS[@]} * (EPOCHS * SEC_PER_EPOCH + SEC_PER_EVAL * (1 + 3 * BENCH_REPS)) + SEC_PER_EVAL ))
[[ -f "$PRETRAINED" ]] || estimate=$(( estimate + SEC_MAIN_COMMAND ))
echo "study: ${#RUNS[@]} fine-tuning runs x $EPOCHS epoch(s) + evaluation, export and benchmark of each"
echo "study: estimated $(( estimate / 60 )) min on the 2-core machine$([[ -f "$PRETRAINED" ]] || echo ", the main command's dense pretraining included")"

if has_phase pretrain && [[ ! -f "$PRETRAINED" ]]; then
    step "pretraining: the README's main command (corpus, dense model)"
    RUN_DIR="$DEMO_DIR" bash scripts/run_offline_demo.sh
fi
[[ -f "$PRETRAINED" ]] || die "PRETRAINED=$PRETRAINED does not exist (run with PHASES including pretrain)"
mkdir -p "$STUDY_DIR" "$RESULTS_DIR/records" "$RESULTS_DIR/reports" "$RESULTS_DIR/bench" "$RESULTS_DIR/logs"

for run in "${RUNS[@]}"; do
    read -r name method budget alpha beta <<< "$run"
    dir="$STUDY_DIR/$name"
    [[ "$budget" == "-" ]] && budget=""
    if has_phase train && [[ ! -f "$dir/done" ]]; then
        step "train $name ($method${budget:+, K=$budget}${alpha:+, alpha=$alpha beta=$beta})"
        mkdir -p "$dir"
        METHOD="$method" BUDGET="$budget" ALPHA="$alpha" BETA="$beta" THETA="" DATA_BIN="$DATA_BIN" \
            PRETRAINED="$PRETRAINED" SAVE_DIR="$dir" MAX_EPOCH="$EPOCHS" DSP_ANNEAL_UPDATES="$DSP_ANNEAL_UPDATES" \
            PYTHON="$PYTHON" bash examples/iwslt14_de_en/finetune.sh > "$dir/train.log" 2>&1 \
            || { tail -20 "$dir/train.log" >&2; die "training $name failed (log: $dir/train.log)"; }
        grep -E "neuroprune \||\| train \| epoch|\| valid \| epoch|michel \|" "$dir/train.log" > "$RESULTS_DIR/logs/$name.txt" || true
        touch "$dir/done"
    fi
done

records=()
if has_phase evaluate && stale "$RESULTS_DIR/records/dense.json" "$PRETRAINED"; then
    step "evaluate the pretrained dense model"
    "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$PRETRAINED" --data-bin "$DATA_BIN" --name dense \
        --method dense --beam "$BEAM" --out "$RESULTS_DIR/records/dense.json" --overwrite --cpu
fi
for run in "${RUNS[@]}"; do
    read -r name method budget _ _ <<< "$run"
    dir="$STUDY_DIR/$name"
    record="$RESULTS_DIR/records/$name.json"
    [[ -f "$dir/done" ]] || { echo "study: $name has not been trained yet, skipping its later steps"; continue; }
    budget_arg=(); [[ "$budget" != "-" ]] && budget_arg=(--budget "$budget")
    if has_phase evaluate && stale "$record" "$dir/checkpoint_last.pt"; then
        step "evaluate $name"
        "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$dir/checkpoint_last.pt" --data-bin "$DATA_BIN" \
            --name "$name" --method "$method" "${budget_arg[@]}" --beam "$BEAM" --out "$record" --overwrite --cpu
    fi
    if has_phase export && { stale "$dir/exported.pt" "$dir/checkpoint_last.pt" || stale "$RESULTS_DIR/reports/$name.json" "$dir/checkpoint_last.pt"; }; then
        step "report and export $name"
        "$PYTHON" -m neuroprune_fairseq.tools.report --checkpoint "$dir/checkpoint_last.pt" \
            --out "$RESULTS_DIR/reports/$name.json" --overwrite > /dev/null
        "$PYTHON" -m neuroprune_fairseq.tools.export --checkpoint "$dir/checkpoint_last.pt" --out "$dir/exported.pt" --overwrite
    fi
    if has_phase bench && [[ -f "$dir/exported.pt" ]] && stale "$RESULTS_DIR/bench/$name.json" "$dir/exported.pt" "$PRETRAINED"; then
        step "inference benchmark $name (dense vs masked vs exported, $BENCH_REPS rep(s))"
        "$PYTHON" -m neuroprune_fairseq.tools.bench_generate --data-bin "$DATA_BIN" --dense "$PRETRAINED" \
            --masked "$dir/checkpoint_last.pt" --exported "$dir/exported.pt" --reps "$BENCH_REPS" --beam "$BEAM" \
            --threads "$BENCH_THREADS" --cpu --out "$RESULTS_DIR/bench/$name.json" --overwrite
    fi
    [[ -f "$record" ]] && records+=("$record")
done

if has_phase summary && (( ${#records[@]} > 0 )); then
    step "results table and plots -> $RESULTS_DIR"
    all=("$RESULTS_DIR/records/dense.json" "${records[@]}")
    "$PYTHON" -m neuroprune_fairseq.tools.study_table "${all[@]}" --bench-dir "$RESULTS_DIR/bench" \
        --logs-dir "$RESULTS_DIR/logs" --out-tsv "$RESULTS_DIR/results.tsv" --out-md "$RESULTS_DIR/results.md"
    title="offline German-English corpus, narrow 108-head model"
    for kind in bleu-vs-heads frontier; do
        "$PYTHON" -m neuroprune_fairseq.tools.plots "$kind" "${all[@]}" --out "$RESULTS_DIR/$kind.png" --title "$title"
    done
    # records_named NAME...: the records of those runs that exist (the map and histograms compare a few runs)
    records_named() { for n in "$@"; do [[ -f "$RESULTS_DIR/records/$n.json" ]] && echo "$RESULTS_DIR/records/$n.json"; done; true; }
    mapfile -t heads < <(records_named np_k54_strong dsp_k54 michel_k54 np_k27_strong dsp_k27 michel_k27)
    (( ${#heads[@]} > 0 )) && "$PYTHON" -m neuroprune_fairseq.tools.plots head-map "${heads[@]}" --out "$RESULTS_DIR/head-map.png" --title "$title"
    mapfile -t degrees < <(records_named dense np_pen_strong np_k54_strong l1_strong dsp_k54)
    "$PYTHON" -m neuroprune_fairseq.tools.plots ffn-degrees "${degrees[@]}" --out "$RESULTS_DIR/ffn-degrees.png" --title "$title"
fi
echo
echo "study: finished the phases '$PHASES' in $(( ($(date +%s) - START) / 60 )) min"
