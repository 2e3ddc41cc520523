# Shared by study.sh and frontier.sh (source it; it only defines functions): fine-tuning runs from one dense
# checkpoint, each evaluated on valid and test, their files committed as they land, lanes side by side.
# A run is "NAME METHOD BUDGET SEED VAR=VALUE..." (BUDGET "-" for none); the variables go to finetune.sh, except
# LABEL=..., the method name written into the run's records (default: METHOD).
# The sourcing script sets: STUDY_DIR RESULTS_DIR DATA_BIN PRETRAINED EPOCHS SELECT_EPOCHS BEAM THREADS LANES COMMIT
# DEVICE_FLAGS PHASES PYTHON ZERO_BELOW (empty: records of the stored checkpoints) and the arrays EXTRA_ARGS GEN_DEVICE.

START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
name_of() { echo "${1%% *}"; }
finished() { [[ -f "$RESULTS_DIR/records/$1.json" && -f "$RESULTS_DIR/valid/$1.json" ]]; }

# check_settings: the protocol's epochs and the name:alpha:beta strengths in STRENGTHS.
check_settings() {
    (( SELECT_EPOCHS >= 1 && SELECT_EPOCHS < EPOCHS )) || die "SELECT_EPOCHS=$SELECT_EPOCHS: expected 1 <= SELECT_EPOCHS < EPOCHS=$EPOCHS (heads fixed for the rest)"
    local s; for s in $STRENGTHS; do [[ "$s" =~ ^[A-Za-z0-9.-]+:[^:]+:[^:]+$ ]] || die "STRENGTHS entry '$s' is not name:alpha:beta (a name without '_' or ':')"; done
}

# check_pretrained: every run of one study starts from the same checkpoint; its sha256 is kept with the records.
check_pretrained() {
    [[ -f "$PRETRAINED" ]] || die "PRETRAINED=$PRETRAINED does not exist: run the main command (scripts/run_offline_demo.sh) first"
    local identity="$RESULTS_DIR/pretrained.sha256" checksum
    checksum=$(sha256sum "$PRETRAINED" | cut -d' ' -f1)
    if [[ ! -f "$identity" ]]; then echo "$checksum" > "$identity"
    elif [[ "$(cat "$identity")" != "$checksum" ]]; then
        die "PRETRAINED=$PRETRAINED is not the checkpoint this study's records started from (sha256 in $identity); use that one, or another RESULTS_DIR"
    fi
}

# print_estimate TOTAL_RUNS SEC_PER_RUN SEC_PER_EVAL EVALS_PER_RUN: runs left and the time they need on LANES lanes.
print_estimate() {  # print_estimate RUNS SEC_PER_RUN SEC_PER_EVAL EVALS [NAME...]: with NAMEs, only their records count as done
    local done_runs=0 f left name
    if (( $# > 4 )); then
        for name in "${@:5}"; do [[ -f "$RESULTS_DIR/records/$name.json" ]] && done_runs=$(( done_runs + 1 )); done
    else
        for f in "$RESULTS_DIR"/records/*.json; do [[ -f "$f" ]] && done_runs=$(( done_runs + 1 )); done
    fi
    left=$(( $1 > done_runs ? $1 - done_runs : 0 ))
    echo "$(basename "$0"): $1 runs, $done_runs with records already; $left to train and evaluate x $EPOCHS epochs, $LANES side by side"
    if [[ -n "$2" ]]; then
        echo "$(basename "$0"): estimated $(( left * ($2 + $4 * $3) / LANES / 60 )) min ($left runs x (SEC_PER_RUN=$2 + $4 x SEC_PER_EVAL=$3) s / $LANES lanes)"
    else
        echo "$(basename "$0"): no time estimate (SEC_PER_RUN is empty: set it and SEC_PER_EVAL to seconds measured on this machine)"
    fi
}

commit() {  # commit NAME: the run's files, in the git work tree that holds RESULTS_DIR, under a lock (lanes finish together)
    [[ "$COMMIT" == 1 ]] || return 0
    local files=() f
    for f in "$RESULTS_DIR"/{records,valid,logs,reports,bench,prune}/"$1".{json,txt} "$RESULTS_DIR/text/$1.hyp" "$RESULTS_DIR/text/test.ref" "$RESULTS_DIR"/choices/*.json "$RESULTS_DIR/pretrained.sha256"; do
        [[ -f "$f" ]] && files+=("$(realpath "$f")")
    done
    ( flock 9; git -C "$RESULTS_DIR" add -- "${files[@]}" && { git -C "$RESULTS_DIR" diff --cached --quiet -- "${files[@]}" \
        || git -C "$RESULTS_DIR" commit -q -m "$(basename "$0" .sh): $1" -- "${files[@]}"; } ) 9> "$STUDY_DIR/.commit.lock" \
        || die "could not commit $1's files (COMMIT=1 needs RESULTS_DIR inside a git work tree)"
}

evaluate() {  # evaluate NAME LABEL BUDGET SUBSET OUT [TEXT_OUT]: with ZERO_BELOW, the test record also scores the stored model
    local extra=()
    [[ "$3" != "-" ]] && extra+=(--budget "$3")
    [[ -n "${6:-}" ]] && extra+=(--text-out "$6")
    if [[ -n "$ZERO_BELOW" ]]; then
        extra+=(--zero-below "$ZERO_BELOW")
        [[ "$4" == test ]] && extra+=(--score-unthresholded)
    fi
    OMP_NUM_THREADS=$THREADS "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$STUDY_DIR/$1/checkpoint_last.pt" \
        --data-bin "$DATA_BIN" --name "$1" --method "$2" --subset "$4" --beam "$BEAM" --out "$5" \
        --overwrite "${extra[@]}" "${GEN_DEVICE[@]}" > /dev/null
}

run_one() {  # run_one "NAME METHOD BUDGET SEED VARS...": train, evaluate on valid and test, log lines, commit
    local name method budget seed vars dir label v train_vars=()
    read -r name method budget seed vars <<< "$1"
    dir="$STUDY_DIR/$name"
    label=$method
    for v in $vars; do if [[ "$v" == LABEL=* ]]; then label=${v#LABEL=}; else train_vars+=("$v"); fi; done
    finished "$name" && return 0
    if has_phase train && [[ ! -f "$dir/done" ]]; then
        step "train $name ($method$([[ "$budget" != - ]] && echo ", K=$budget")${vars:+, $vars})"
        mkdir -p "$dir"
        local env_vars=(METHOD="$method" SEED="$seed" DATA_BIN="$DATA_BIN" PRETRAINED="$PRETRAINED" SAVE_DIR="$dir"
                        MAX_EPOCH="$EPOCHS" BUDGET_PASSES="$SELECT_EPOCHS" PRUNE_START_EPOCH=1 DEVICE_FLAGS="$DEVICE_FLAGS"
                        PYTHON="$PYTHON" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" "${train_vars[@]}")
        [[ "$budget" != "-" ]] && env_vars+=(BUDGET="$budget")
        # appended: a run cut short resumes from its checkpoint_last.pt, and its log keeps the earlier epochs' lines
        env "${env_vars[@]}" bash examples/iwslt14_de_en/finetune.sh "${EXTRA_ARGS[@]}" >> "$dir/train.log" 2>&1 \
            || { tail -20 "$dir/train.log" >&2; die "training $name failed (log: $dir/train.log)"; }
        grep -E "neuroprune \||dsp \||\| train \| epoch|\| valid \| epoch|michel \|" "$dir/train.log" > "$RESULTS_DIR/logs/$name.txt" || true
        touch "$dir/done"
    fi
    [[ -f "$dir/done" ]] || { echo "$(basename "$0"): $name has not been trained yet (PHASES=$PHASES), skipping its evaluation"; return 0; }
    if has_phase evaluate; then
        step "evaluate $name on valid and test"
        evaluate "$name" "$label" "$budget" valid "$RESULTS_DIR/valid/$name.json"
        evaluate "$name" "$label" "$budget" test "$RESULTS_DIR/records/$name.json" "$dir/test"
        mv "$dir/test.hyp" "$RESULTS_DIR/text/$name.hyp"
        [[ -f "$RESULTS_DIR/text/test.ref" ]] || cp "$dir/test.ref" "$RESULTS_DIR/text/test.ref"
        cmp -s "$dir/test.ref" "$RESULTS_DIR/text/test.ref" || die "$name: its test references differ from $RESULTS_DIR/text/test.ref"
        commit "$name"
    fi
}

run_all() {  # run_all RUN...: LANES lanes side by side, each taking every LANES-th run with RUNNER (default run_one)
    local lane pids=() i
    for (( lane = 0; lane < LANES; lane++ )); do
        ( for (( i = lane; i < $#; i += LANES )); do "${RUNNER:-run_one}" "${@:i+1:1}"; done ) &
        pids+=($!)
    done
    local failed=0 pid; for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    (( failed == 0 )) || die "a lane failed (see above)"
}

pick() {  # pick KIND NAME...: the name whose valid record has the best BLEU (RESULTS_DIR/choices/KIND.json)
    local records=() n; for n in "${@:2}"; do records+=("$RESULTS_DIR/valid/$n.json"); done
    "$PYTHON" -m neuroprune.tools.pick_best "${records[@]}" --out "$RESULTS_DIR/choices/$1.json" --overwrite
}
