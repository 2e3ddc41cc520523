#!/usr/bin/env bash
# The comparison study on the offline German-English corpus: one dense pretraining (the README's main
# command, scripts/run_offline_demo.sh), then from that checkpoint, with the same fine-tuning epochs:
#   NeuroPrune at head budgets {none (penalties only), 81, 54, 27} (and at fixed thetas, THETAS) x two
#   penalty strengths, l1 at the same two strengths, DSP at K in {81, 54, 27}, Michel importance at {81, 54, 27};
# then for every run: evaluation (record), topology report, export, inference benchmark; finally the
# results table and the four plots. Resumable: a step whose output exists and is newer than its inputs is
# skipped, so results committed in the repository are redone by a fresh clone's new training.
# full_size.sh runs this script with IWSLT14 settings; extra arguments go to every fine-tuning's fairseq-train.
# Usage: bash examples/iwslt14_de_en/study.sh [extra fairseq-train args]   (env overrides below; PHASES selects steps)
set -euo pipefail

STUDY_DIR=${STUDY_DIR:-runs/study}
RESULTS_DIR=${RESULTS_DIR:-examples/iwslt14_de_en/results/study}
DEMO_DIR=${DEMO_DIR:-runs/offline_demo}
DATA_BIN=${DATA_BIN:-data/offline_de_en_libreoffice/data-bin40}
PRETRAINED=${PRETRAINED:-$DEMO_DIR/dense/checkpoint_last.pt}
EPOCHS=${EPOCHS:-1}
STRENGTHS=${STRENGTHS-"weak:1e-5:1e-4 strong:1e-4:1e-3"}  # name:alpha:beta
NP_BUDGETS=${NP_BUDGETS-"none 81 54 27"}
THETAS=${THETAS-}  # NeuroPrune runs at these fixed elimination thresholds (no head budget), per strength
DSP_BUDGETS=${DSP_BUDGETS-"81 54 27"}
MICHEL_BUDGETS=${MICHEL_BUDGETS-"81 54 27"}
DSP_ANNEAL_UPDATES=${DSP_ANNEAL_UPDATES:-200}
BEAM=${BEAM:-5}
BENCH_REPS=${BENCH_REPS:-1}
BENCH_THREADS=${BENCH_THREADS:-1}  # CPU threads per benchmarked generation (1: steadiest on a shared machine)
DEVICE_FLAGS=${DEVICE_FLAGS:---cpu}  # fairseq-train device flags; generation runs on CPU when they hold --cpu
PHASES=${PHASES:-"pretrain train evaluate export bench summary"}
TITLE=${TITLE:-"offline German-English corpus, narrow 108-head model"}
HEAD_MAP_RUNS=${HEAD_MAP_RUNS-"np_k54_strong dsp_k54 michel_k54 np_k27_strong dsp_k27 michel_k27"}
DEGREE_RUNS=${DEGREE_RUNS-"dense np_pen_strong np_k54_strong l1_strong dsp_k54"}
SEC_PER_EPOCH=${SEC_PER_EPOCH-180}  # measured: 243 updates at ~1.45 updates/s on the 2-core machine; empty: no estimate
SEC_PER_EVAL=${SEC_PER_EVAL:-35}     # measured: beam-5 generation of the 1,500 test sentences, ~26-30 s
SEC_MAIN_COMMAND=${SEC_MAIN_COMMAND:-1380}  # the main command (its dense model), when PRETRAINED is missing
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,10p "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
die() { echo "study.sh: $*" >&2; exit 1; }
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
# stale OUT IN...: OUT is missing or older than one of the inputs (then the step that writes OUT runs).
stale() { local out=$1; shift; [[ ! -f "$out" ]] && return 0; local in; for in in "$@"; do [[ "$in" -nt "$out" ]] && return 0; done; return 1; }

# The run list: "name method budget alpha beta theta" ("-" = none).
RUNS=()
for strength in $STRENGTHS; do
    IFS=: read -r sname alpha beta <<< "$strength"
    for budget in $NP_BUDGETS; do
        if [[ "$budget" == none ]]; then RUNS+=("np_pen_$sname neuroprune - $alpha $beta -")
        else RUNS+=("np_k${budget}_$sname neuroprune $budget $alpha $beta -"); fi
    done
    for theta in $THETAS; do RUNS+=("np_t${theta}_$sname neuroprune - $alpha $beta $theta"); done
    RUNS+=("l1_$sname l1 - $alpha $beta -")
done
for budget in $DSP_BUDGETS; do RUNS+=("dsp_k$budget dsp $budget 0 0 -"); done
for budget in $MICHEL_BUDGETS; do RUNS+=("michel_k$budget michel $budget 0 0 -"); done
GEN_DEVICE=(); [[ "$DEVICE_FLAGS" == *--cpu* ]] && GEN_DEVICE=(--cpu)

# Generation runs: evaluation of every run and the dense model, and 3 models per benchmark.
echo "study: ${#RUNS[@]} fine-tuning runs x $EPOCHS epoch(s) + evaluation, export and benchmark of each"
if [[ -n "$SEC_PER_EPOCH" ]]; then
    estimate=$(( ${#RUNS[@]} * (EPOCHS * SEC_PER_EPOCH + SEC_PER_EVAL * (1 + 3 * BENCH_REPS)) + SEC_PER_EVAL ))
    [[ -f "$PRETRAINED" ]] || estimate=$(( estimate + SEC_MAIN_COMMAND ))
    echo "study: estimated $(( estimate / 60 )) min on the 2-core machine$([[ -f "$PRETRAINED" ]] || echo ", the main command's dense pretraining included")"
else
    echo "study: no time estimate (SEC_PER_EPOCH is empty: set it and SEC_PER_EVAL to seconds measured on this machine)"
fi

if has_phase pretrain && [[ ! -f "$PRETRAINED" ]]; then
    step "pretraining: the README's main command (corpus, dense model)"
    RUN_DIR="$DEMO_DIR" bash scripts/run_offline_demo.sh
fi
[[ -f "$PRETRAINED" ]] || die "PRETRAINED=$PRETRAINED does not exist (run with PHASES including pretrain)"
mkdir -p "$STUDY_DIR" "$RESULTS_DIR/records" "$RESULTS_DIR/reports" "$RESULTS_DIR/bench" "$RESULTS_DIR/logs"

for run in "${RUNS[@]}"; do
    read -r name method budget alpha beta theta <<< "$run"
    dir="$STUDY_DIR/$name"
    [[ "$budget" == "-" ]] && budget=""
    [[ "$theta" == "-" ]] && theta=""
    if has_phase train && [[ ! -f "$dir/done" ]]; then
        step "train $name ($method${budget:+, K=$budget}${theta:+, theta=$theta}, alpha=$alpha beta=$beta)"
        mkdir -p "$dir"
        METHOD="$method" BUDGET="$budget" ALPHA="$alpha" BETA="$beta" THETA="$theta" DATA_BIN="$DATA_BIN" \
            PRETRAINED="$PRETRAINED" SAVE_DIR="$dir" MAX_EPOCH="$EPOCHS" DSP_ANNEAL_UPDATES="$DSP_ANNEAL_UPDATES" \
            DEVICE_FLAGS="$DEVICE_FLAGS" PYTHON="$PYTHON" bash examples/iwslt14_de_en/finetune.sh "$@" > "$dir/train.log" 2>&1 \
            || { tail -20 "$dir/train.log" >&2; die "training $name failed (log: $dir/train.log)"; }
        grep -E "neuroprune \||\| train \| epoch|\| valid \| epoch|michel \|" "$dir/train.log" > "$RESULTS_DIR/logs/$name.txt" || true
        touch "$dir/done"
    fi
done

records=()
if has_phase evaluate && stale "$RESULTS_DIR/records/dense.json" "$PRETRAINED"; then
    step "evaluate the pretrained dense model"
    "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$PRETRAINED" --data-bin "$DATA_BIN" --name dense \
        --method dense --beam "$BEAM" --out "$RESULTS_DIR/records/dense.json" --overwrite "${GEN_DEVICE[@]}"
fi
for run in "${RUNS[@]}"; do
    read -r name method budget _ <<< "$run"
    dir="$STUDY_DIR/$name"
    record="$RESULTS_DIR/records/$name.json"
    [[ -f "$dir/done" ]] || { echo "study: $name has not been trained yet, skipping its later steps"; continue; }
    budget_arg=(); [[ "$budget" != "-" ]] && budget_arg=(--budget "$budget")
    if has_phase evaluate && stale "$record" "$dir/checkpoint_last.pt"; then
        step "evaluate $name"
        "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$dir/checkpoint_last.pt" --data-bin "$DATA_BIN" \
            --name "$name" --method "$method" "${budget_arg[@]}" --beam "$BEAM" --out "$record" --overwrite "${GEN_DEVICE[@]}"
    fi
    if has_phase export && { stale "$dir/exported.pt" "$dir/checkpoint_last.pt" || stale "$RESULTS_DIR/reports/$name.json" "$dir/checkpoint_last.pt"; }; then
        step "report and export $name"
        "$PYTHON" -m neuroprune.tools.report --checkpoint "$dir/checkpoint_last.pt" \
            --out "$RESULTS_DIR/reports/$name.json" --overwrite > /dev/null
        "$PYTHON" -m neuroprune_fairseq.tools.export --checkpoint "$dir/checkpoint_last.pt" --out "$dir/exported.pt" --overwrite
    fi
    if has_phase bench && [[ -f "$dir/exported.pt" ]] && stale "$RESULTS_DIR/bench/$name.json" "$dir/exported.pt" "$PRETRAINED"; then
        step "inference benchmark $name (dense vs masked vs exported, $BENCH_REPS rep(s))"
        "$PYTHON" -m neuroprune_fairseq.tools.bench_generate --data-bin "$DATA_BIN" --dense "$PRETRAINED" \
            --masked "$dir/checkpoint_last.pt" --exported "$dir/exported.pt" --reps "$BENCH_REPS" --beam "$BEAM" \
            --threads "$BENCH_THREADS" "${GEN_DEVICE[@]}" --out "$RESULTS_DIR/bench/$name.json" --overwrite
    fi
    [[ -f "$record" ]] && records+=("$record")
done

if has_phase summary && (( ${#records[@]} > 0 )); then
    step "results table and plots -> $RESULTS_DIR"
    all=("$RESULTS_DIR/records/dense.json" "${records[@]}")
    "$PYTHON" -m neuroprune.tools.study_table "${all[@]}" --bench-dir "$RESULTS_DIR/bench" \
        --logs-dir "$RESULTS_DIR/logs" --out-tsv "$RESULTS_DIR/results.tsv" --out-md "$RESULTS_DIR/results.md"
    for kind in bleu-vs-heads frontier; do
        "$PYTHON" -m neuroprune.tools.plots "$kind" "${all[@]}" --out "$RESULTS_DIR/$kind.png" --title "$TITLE"
    done
    # records_named NAME...: the records of those runs that exist (the map and histograms compare a few runs)
    records_named() { for n in "$@"; do [[ -f "$RESULTS_DIR/records/$n.json" ]] && echo "$RESULTS_DIR/records/$n.json"; done; true; }
    # shellcheck disable=SC2086
    mapfile -t heads < <(records_named $HEAD_MAP_RUNS)
    if (( ${#heads[@]} > 0 )); then
        "$PYTHON" -m neuroprune.tools.plots head-map "${heads[@]}" --out "$RESULTS_DIR/head-map.png" --title "$TITLE"
    fi
    # shellcheck disable=SC2086
    mapfile -t degrees < <(records_named $DEGREE_RUNS)
    if (( ${#degrees[@]} > 0 )); then
        "$PYTHON" -m neuroprune.tools.plots ffn-degrees "${degrees[@]}" --out "$RESULTS_DIR/ffn-degrees.png" --title "$TITLE"
    fi
fi
echo
echo "study: finished the phases '$PHASES' in $(( ($(date +%s) - START) / 60 )) min"
