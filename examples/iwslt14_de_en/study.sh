#!/usr/bin/env bash
# The comparison study, one protocol for every method. From one dense checkpoint (PRETRAINED, the main
# command's), every run fine-tunes EPOCHS epochs with the same data, optimizer, learning rate and updates;
# every method has chosen its heads by the end of the first SELECT_EPOCHS epoch(s) and trains the rest with
# them fixed: NeuroPrune's budget passes end there (one pass per epoch), DSP's gates anneal over exactly those
# updates, Michel prunes before the first update. The dense control fine-tunes the same way with no penalty
# and no pruning: "BLEU lost" is measured against it.
# Runs (NAME = GROUP_kBUDGET_sSEED, dense_sSEED): for each seed in SEEDS, the dense control, and at each budget
# in BUDGETS NeuroPrune (paper pass, group np_STRENGTH), NeuroPrune+ (np_plus_STRENGTH), DSP (dsp_MODE) and
# Michel (michel); at SELECT_BUDGET also the ablations: NeuroPrune without fold (np_nofold_STRENGTH) and DSP's
# other modes. Choices, made on the validation split with the first seed at SELECT_BUDGET before any other run:
# each NeuroPrune variant's penalty strength (STRENGTHS) and DSP's mode (DSP_MODES), written to
# RESULTS_DIR/choices/*.json. Strength and mode names must not contain '_'.
# Each run is evaluated on valid (RESULTS_DIR/valid/NAME.json) and test (RESULTS_DIR/records/NAME.json, its
# hypotheses in RESULTS_DIR/text/NAME.hyp); its log lines go to RESULTS_DIR/logs/NAME.txt. A run whose two
# records exist is neither retrained nor evaluated again, so a study resumes on any machine from the committed
# records; COMMIT=1 commits each run's files as soon as they exist. LANES one-thread runs go side by side.
# The summary: mean and spread over seeds, the seed-pooled paired bootstrap of each NeuroPrune variant against
# each baseline at each budget (Holm-adjusted over the budget's tests), the plots, and DSP's top-K changes per
# epoch (RESULTS_DIR/dsp_topk_changes.tsv; the summary fails if the top-K moved after SELECT_EPOCHS); it alone
# needs no PRETRAINED. full_size.sh runs this script with IWSLT14 settings; extra arguments go to every fine-tuning's fairseq-train.
# Usage: bash examples/iwslt14_de_en/study.sh [extra fairseq-train args]   (env overrides below; PHASES selects steps)
set -euo pipefail

STUDY_DIR=${STUDY_DIR:-runs/seed_study}
RESULTS_DIR=${RESULTS_DIR:-examples/iwslt14_de_en/results/seed_study}
DEMO_DIR=${DEMO_DIR:-runs/offline_demo}
DATA_BIN=${DATA_BIN:-data/offline_de_en_libreoffice/data-bin40}
PRETRAINED=${PRETRAINED:-$DEMO_DIR/dense/checkpoint_last.pt}
EPOCHS=${EPOCHS:-2}
SELECT_EPOCHS=${SELECT_EPOCHS:-1}  # the part of the run in which every method chooses its heads
SEEDS=${SEEDS:-"1 2 3"}
BUDGETS=${BUDGETS-"81 54 27"}
SELECT_BUDGET=${SELECT_BUDGET:-54}  # where the choices are made (first seed, valid) and the ablations run
STRENGTHS=${STRENGTHS:-"weak:1e-5:1e-4 strong:1e-4:1e-3"}  # name:alpha:beta, NeuroPrune's candidates
DSP_MODES=${DSP_MODES:-"joint pipelined"}  # DSP's candidates; the others run at SELECT_BUDGET as ablations
ABLATE_FOLD=${ABLATE_FOLD:-1}  # 1: NeuroPrune's paper pass without its fold (masking only) at SELECT_BUDGET
UPDATES_PER_EPOCH=${UPDATES_PER_EPOCH:-}  # empty: read from the first dense control's log
BEAM=${BEAM:-5}
LANES=${LANES:-2}  # runs side by side, each with THREADS threads
THREADS=${THREADS:-1}
COMMIT=${COMMIT:-0}  # 1: git-commit each run's records, hypotheses and log lines as soon as they exist
BENCH_REPS=${BENCH_REPS:-1}
BENCH_THREADS=${BENCH_THREADS:-1}  # CPU threads per benchmarked generation (1: steadiest on a shared machine)
DEVICE_FLAGS=${DEVICE_FLAGS:---cpu}  # fairseq-train device flags; generation runs on CPU when they hold --cpu
PHASES=${PHASES:-"train evaluate summary"}  # also: export bench (each run exported and its generation timed)
TITLE=${TITLE:-"offline German-English corpus, narrow 108-head model"}
SEC_PER_RUN=${SEC_PER_RUN-840}  # measured 2026-12-01: the first dense control (486 updates) trained in 824 s on one thread beside the test suite
SEC_PER_EVAL=${SEC_PER_EVAL:-65}  # measured alongside: beam-5 generation of 1,500 sentences on one thread, ~65 s
ZERO_BELOW=${ZERO_BELOW-1e-4}  # evaluate each run with |w| below this zeroed in q/k/v/out/fc1/fc2 (empty: as stored)
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
die() { echo "study.sh: $*" >&2; exit 1; }
# shellcheck source=examples/iwslt14_de_en/runs_lib.sh
source examples/iwslt14_de_en/runs_lib.sh
check_settings
for m in $DSP_MODES; do [[ "$m" == joint || "$m" == pipelined ]] || die "DSP_MODES entry '$m' is not joint or pipelined"; done
[[ " $BUDGETS " == *" $SELECT_BUDGET "* ]] || die "SELECT_BUDGET=$SELECT_BUDGET is not one of BUDGETS=$BUDGETS"
FIRST_SEED=${SEEDS%% *}
GEN_DEVICE=(); [[ "$DEVICE_FLAGS" == *--cpu* ]] && GEN_DEVICE=(--cpu)
mkdir -p "$STUDY_DIR" "$RESULTS_DIR"/{records,valid,text,logs,choices,reports,bench}

# A run: "NAME METHOD BUDGET SEED VAR=VALUE..." (BUDGET "-" for none); the variables go to finetune.sh.
strength_vars() { local s; for s in $STRENGTHS; do IFS=: read -r n a b <<< "$s"; [[ "$n" == "$1" ]] && { echo "ALPHA=$a BETA=$b"; return; }; done; die "no strength '$1' in STRENGTHS"; }
np_run() { echo "${1}_$2_k$4_s$5 $3 $4 $5 $(strength_vars "$2") ${6:-}"; }  # np_run GROUP STRENGTH METHOD BUDGET SEED [VARS]
dsp_run() { echo "dsp_$1_k$2_s$3 dsp $2 $3 DSP_MODE=$1 DSP_ANNEAL_UPDATES=$(( SELECT_EPOCHS * UPDATES_PER_EPOCH ))"; }
dense_run() { echo "dense_s$1 dense - $1"; }
michel_run() { echo "michel_k$1_s$2 michel $1 $2"; }

EXTRA_ARGS=("$@")
n_seeds=$(wc -w <<< "$SEEDS"); n_budgets=$(wc -w <<< "$BUDGETS"); n_strengths=$(wc -w <<< "$STRENGTHS"); n_modes=$(wc -w <<< "$DSP_MODES")
total_runs=$(( n_seeds * (1 + 4 * n_budgets + ABLATE_FOLD + n_modes - 1) + 2 * (n_strengths - 1) ))
print_estimate "$total_runs" "$SEC_PER_RUN" "$SEC_PER_EVAL" 2
if has_phase train || has_phase evaluate || has_phase bench; then
    check_pretrained
else
    echo "study: PHASES=$PHASES trains, evaluates and benchmarks nothing, so PRETRAINED is neither needed nor checked"
fi

# 1. The first dense control: it also gives the updates per epoch that DSP's anneal spans.
run_one "$(dense_run "$FIRST_SEED")"
if [[ -z "$UPDATES_PER_EPOCH" ]]; then
    UPDATES_PER_EPOCH=$(grep -oP '\| train \| epoch 001 \|.*num_updates \K[0-9]+' "$RESULTS_DIR/logs/dense_s$FIRST_SEED.txt" | head -1) \
        || die "no epoch-1 update count in $RESULTS_DIR/logs/dense_s$FIRST_SEED.txt: set UPDATES_PER_EPOCH"
fi
echo "study: $UPDATES_PER_EPOCH updates per epoch; heads chosen within the first $(( SELECT_EPOCHS * UPDATES_PER_EPOCH ))"

# 2. The choices on valid (first seed, SELECT_BUDGET).
candidates=() np_names=() plus_names=() dsp_names=()
for s in $STRENGTHS; do
    candidates+=("$(np_run np "${s%%:*}" neuroprune "$SELECT_BUDGET" "$FIRST_SEED")"); np_names+=("$(name_of "${candidates[-1]}")")
    candidates+=("$(np_run np_plus "${s%%:*}" neuroprune_plus "$SELECT_BUDGET" "$FIRST_SEED")"); plus_names+=("$(name_of "${candidates[-1]}")")
done
for mode in $DSP_MODES; do candidates+=("$(dsp_run "$mode" "$SELECT_BUDGET" "$FIRST_SEED")"); dsp_names+=("$(name_of "${candidates[-1]}")"); done
run_all "${candidates[@]}"
for run in "${candidates[@]}"; do finished "$(name_of "$run")" || die "$(name_of "$run") has no records, so no choice can be made yet (PHASES=$PHASES)"; done
best=$(pick np "${np_names[@]}"); np_strength=${best#np_}; np_strength=${np_strength%_k*}
best=$(pick np_plus "${plus_names[@]}"); plus_strength=${best#np_plus_}; plus_strength=${plus_strength%_k*}
best=$(pick dsp "${dsp_names[@]}"); dsp_mode=${best#dsp_}; dsp_mode=${dsp_mode%_k*}
echo "study: chosen on valid: NeuroPrune strength $np_strength, NeuroPrune+ strength $plus_strength, DSP mode $dsp_mode"

# 3. Every other run.
RUNS=()
for seed in $SEEDS; do
    [[ "$seed" != "$FIRST_SEED" ]] && RUNS+=("$(dense_run "$seed")")
    for budget in $BUDGETS; do
        RUNS+=("$(np_run np "$np_strength" neuroprune "$budget" "$seed")" "$(np_run np_plus "$plus_strength" neuroprune_plus "$budget" "$seed")"
               "$(dsp_run "$dsp_mode" "$budget" "$seed")" "$(michel_run "$budget" "$seed")")
    done
    [[ "$ABLATE_FOLD" == 1 ]] && RUNS+=("$(np_run np_nofold "$np_strength" neuroprune "$SELECT_BUDGET" "$seed" FOLD=none)")
    for mode in $DSP_MODES; do [[ "$mode" != "$dsp_mode" ]] && RUNS+=("$(dsp_run "$mode" "$SELECT_BUDGET" "$seed")"); done
done
run_all "${RUNS[@]}"

# 4. Optional: topology report, export and inference benchmark of every run.
# every run once (the chosen candidates are also main runs)
mapfile -t ALL < <(printf '%s\n' "$(dense_run "$FIRST_SEED")" "${candidates[@]}" "${RUNS[@]}" | awk '!seen[$1]++')
for run in "${ALL[@]}"; do
    read -r name _ <<< "$run"; dir="$STUDY_DIR/$name"
    [[ -f "$dir/checkpoint_last.pt" ]] || continue
    if has_phase export && [[ ! -f "$RESULTS_DIR/reports/$name.json" || ! -f "$dir/exported.pt" ]]; then
        step "report and export $name"
        "$PYTHON" -m neuroprune.tools.report --checkpoint "$dir/checkpoint_last.pt" --out "$RESULTS_DIR/reports/$name.json" --overwrite > /dev/null
        "$PYTHON" -m neuroprune_fairseq.tools.export --checkpoint "$dir/checkpoint_last.pt" --out "$dir/exported.pt" --overwrite
    fi
    if has_phase bench && [[ -f "$dir/exported.pt" && ! -f "$RESULTS_DIR/bench/$name.json" ]]; then
        step "inference benchmark $name (dense vs masked vs exported, $BENCH_REPS rep(s))"
        "$PYTHON" -m neuroprune_fairseq.tools.bench_generate --data-bin "$DATA_BIN" --dense "$PRETRAINED" \
            --masked "$dir/checkpoint_last.pt" --exported "$dir/exported.pt" --reps "$BENCH_REPS" --beam "$BEAM" \
            --threads "$BENCH_THREADS" "${GEN_DEVICE[@]}" --out "$RESULTS_DIR/bench/$name.json" --overwrite
        commit "$name"
    fi
done

# 5. Summary: tables over seeds with the paired bootstrap, and plots.
if has_phase summary; then
    mapfile -t records < <(for run in "${ALL[@]}"; do f="$RESULTS_DIR/records/$(name_of "$run").json"; [[ -f "$f" ]] && echo "$f"; done)
    if (( ${#records[@]} > 0 )); then
        step "tables over seeds and plots -> $RESULTS_DIR"
        "$PYTHON" -m neuroprune.tools.seed_table "${records[@]}" --text-dir "$RESULTS_DIR/text" \
            --compare "np_$np_strength,np_plus_$plus_strength" --control dense \
            --grid "np_$np_strength,np_plus_$plus_strength,dsp_$dsp_mode,michel" \
            --out-tsv "$RESULTS_DIR/results.tsv" --out-md "$RESULTS_DIR/results.md" --out-json "$RESULTS_DIR/significance.json" --overwrite
        for kind in bleu-vs-heads frontier; do
            "$PYTHON" -m neuroprune.tools.plots "$kind" "${records[@]}" --out "$RESULTS_DIR/$kind.png" --title "$TITLE"
        done
        mapfile -t dsp_logs < <(for f in "${records[@]}"; do n=$(basename "$f" .json); [[ "$n" == dsp_* ]] && echo "$RESULTS_DIR/logs/$n.txt"; done)
        if (( ${#dsp_logs[@]} > 0 )); then  # fails the study when a DSP run's top-K moved after its anneal
            "$PYTHON" -m neuroprune.tools.topk_changes "${dsp_logs[@]}" --select-epochs "$SELECT_EPOCHS" \
                --out "$RESULTS_DIR/dsp_topk_changes.tsv" --overwrite > /dev/null
        fi
    fi
fi
echo
echo "study: finished the phases '$PHASES' in $(( ($(date +%s) - START) / 60 )) min"
