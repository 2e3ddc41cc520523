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
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,22p "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
die() { echo "study.sh: $*" >&2; exit 1; }
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
(( SELECT_EPOCHS >= 1 && SELECT_EPOCHS < EPOCHS )) || die "SELECT_EPOCHS=$SELECT_EPOCHS: expected 1 <= SELECT_EPOCHS < EPOCHS=$EPOCHS (heads fixed for the rest)"
for s in $STRENGTHS; do [[ "$s" =~ ^[A-Za-z0-9.-]+:[^:]+:[^:]+$ ]] || die "STRENGTHS entry '$s' is not name:alpha:beta (a name without '_' or ':')"; done
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

name_of() { echo "${1%% *}"; }
finished() { [[ -f "$RESULTS_DIR/records/$1.json" && -f "$RESULTS_DIR/valid/$1.json" ]]; }

commit() {  # commit NAME: the run's files, in the git work tree that holds RESULTS_DIR, under a lock (lanes finish together)
    [[ "$COMMIT" == 1 ]] || return 0
    local files=() f
    for f in "$RESULTS_DIR"/{records,valid,logs,reports,bench}/"$1".{json,txt} "$RESULTS_DIR/text/$1.hyp" "$RESULTS_DIR/text/test.ref" "$RESULTS_DIR"/choices/*.json "$RESULTS_DIR/pretrained.sha256"; do
        [[ -f "$f" ]] && files+=("$(realpath "$f")")
    done
    ( flock 9; git -C "$RESULTS_DIR" add -- "${files[@]}" && { git -C "$RESULTS_DIR" diff --cached --quiet -- "${files[@]}" \
        || git -C "$RESULTS_DIR" commit -q -m "study: $1" -- "${files[@]}"; } ) 9> "$STUDY_DIR/.commit.lock" \
        || die "could not commit $1's files (COMMIT=1 needs RESULTS_DIR inside a git work tree)"
}

evaluate() {  # evaluate NAME METHOD BUDGET SUBSET OUT [TEXT_OUT]
    local budget_arg=() text=()
    [[ "$3" != "-" ]] && budget_arg=(--budget "$3")
    [[ -n "${6:-}" ]] && text=(--text-out "$6")
    OMP_NUM_THREADS=$THREADS "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$STUDY_DIR/$1/checkpoint_last.pt" \
        --data-bin "$DATA_BIN" --name "$1" --method "$2" "${budget_arg[@]}" --subset "$4" --beam "$BEAM" --out "$5" \
        --overwrite "${text[@]}" "${GEN_DEVICE[@]}" > /dev/null
}

run_one() {  # run_one "NAME METHOD BUDGET SEED VARS...": train, evaluate on valid and test, log lines, commit
    local name method budget seed vars dir
    read -r name method budget seed vars <<< "$1"
    dir="$STUDY_DIR/$name"
    finished "$name" && return 0
    if has_phase train && [[ ! -f "$dir/done" ]]; then
        step "train $name ($method$([[ "$budget" != - ]] && echo ", K=$budget")${vars:+, $vars})"
        mkdir -p "$dir"
        local env_vars=(METHOD="$method" SEED="$seed" DATA_BIN="$DATA_BIN" PRETRAINED="$PRETRAINED" SAVE_DIR="$dir"
                        MAX_EPOCH="$EPOCHS" BUDGET_PASSES="$SELECT_EPOCHS" PRUNE_START_EPOCH=1 DEVICE_FLAGS="$DEVICE_FLAGS"
                        PYTHON="$PYTHON" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS")
        [[ "$budget" != "-" ]] && env_vars+=(BUDGET="$budget")
        # shellcheck disable=SC2206
        env_vars+=($vars)
        # appended: a run cut short resumes from its checkpoint_last.pt, and its log keeps the earlier epochs' lines
        env "${env_vars[@]}" bash examples/iwslt14_de_en/finetune.sh "${EXTRA_ARGS[@]}" >> "$dir/train.log" 2>&1 \
            || { tail -20 "$dir/train.log" >&2; die "training $name failed (log: $dir/train.log)"; }
        grep -E "neuroprune \||dsp \||\| train \| epoch|\| valid \| epoch|michel \|" "$dir/train.log" > "$RESULTS_DIR/logs/$name.txt" || true
        touch "$dir/done"
    fi
    [[ -f "$dir/done" ]] || { echo "study: $name has not been trained yet (PHASES=$PHASES), skipping its evaluation"; return 0; }
    if has_phase evaluate; then
        step "evaluate $name on valid and test"
        evaluate "$name" "$method" "$budget" valid "$RESULTS_DIR/valid/$name.json"
        evaluate "$name" "$method" "$budget" test "$RESULTS_DIR/records/$name.json" "$dir/test"
        mv "$dir/test.hyp" "$RESULTS_DIR/text/$name.hyp"
        [[ -f "$RESULTS_DIR/text/test.ref" ]] || cp "$dir/test.ref" "$RESULTS_DIR/text/test.ref"
        cmp -s "$dir/test.ref" "$RESULTS_DIR/text/test.ref" || die "$name: its test references differ from $RESULTS_DIR/text/test.ref"
        commit "$name"
    fi
}

run_all() {  # run_all RUN...: LANES lanes side by side, each taking every LANES-th run
    local lane pids=() i
    for (( lane = 0; lane < LANES; lane++ )); do
        ( for (( i = lane; i < $#; i += LANES )); do run_one "${@:i+1:1}"; done ) &
        pids+=($!)
    done
    local failed=0 pid; for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    (( failed == 0 )) || die "a lane failed (see above)"
}

pick() {  # pick KIND NAME...: the name whose valid record has the best BLEU (RESULTS_DIR/choices/KIND.json)
    local records=() n; for n in "${@:2}"; do records+=("$RESULTS_DIR/valid/$n.json"); done
    "$PYTHON" -m neuroprune.tools.pick_best "${records[@]}" --out "$RESULTS_DIR/choices/$1.json" --overwrite
}

EXTRA_ARGS=("$@")
n_seeds=$(wc -w <<< "$SEEDS"); n_budgets=$(wc -w <<< "$BUDGETS"); n_strengths=$(wc -w <<< "$STRENGTHS"); n_modes=$(wc -w <<< "$DSP_MODES")
total_runs=$(( n_seeds * (1 + 4 * n_budgets + ABLATE_FOLD + n_modes - 1) + 2 * (n_strengths - 1) ))
done_runs=0; for f in "$RESULTS_DIR"/records/*.json; do [[ -f "$f" ]] && done_runs=$(( done_runs + 1 )); done
left=$(( total_runs > done_runs ? total_runs - done_runs : 0 ))
echo "study: $total_runs runs ($n_seeds seeds), $done_runs with records already; $left to train and evaluate x $EPOCHS epochs, $LANES side by side"
if [[ -n "$SEC_PER_RUN" ]]; then
    echo "study: estimated $(( left * (SEC_PER_RUN + 2 * SEC_PER_EVAL) / LANES / 60 )) min ($left runs x (SEC_PER_RUN=$SEC_PER_RUN + 2 x SEC_PER_EVAL=$SEC_PER_EVAL) s / $LANES lanes)"
else
    echo "study: no time estimate (SEC_PER_RUN is empty: set it and SEC_PER_EVAL to seconds measured on this machine)"
fi
if has_phase train || has_phase evaluate || has_phase bench; then
    [[ -f "$PRETRAINED" ]] || die "PRETRAINED=$PRETRAINED does not exist: run the main command (scripts/run_offline_demo.sh) first"
    # Every run of one study starts from the same checkpoint: its sha256 is kept with the records (and committed).
    identity="$RESULTS_DIR/pretrained.sha256"
    checksum=$(sha256sum "$PRETRAINED" | cut -d' ' -f1)
    if [[ ! -f "$identity" ]]; then echo "$checksum" > "$identity"
    elif [[ "$(cat "$identity")" != "$checksum" ]]; then
        die "PRETRAINED=$PRETRAINED is not the checkpoint this study's records started from (sha256 in $identity); use that one, or another RESULTS_DIR"
    fi
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
