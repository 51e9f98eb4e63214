# Shared body of every model's test/train_*_1p.sh (the ModelZoo template).
# Sourced, not run. The caller sets Network and the defaults (batch_size,
# train_steps and/or train_epochs), then calls, in order:
#
#   modelzoo_parse_args "$@"     # --data_path (required) and the overrides
#   modelzoo_prepare_output [perf]  # test/output/$ASCEND_DEVICE_ID: this device's old logs and
#                                # summaries go, checkpoints never; perf: a fresh default
#                                # ckpt_perf folder (an earlier one is renamed with its date)
#   modelzoo_train CMD ARGS...   # logs, times, keeps the exit status
#   modelzoo_finish perf|acc     # ten-key summary from the run's result file
#
# The Ascend multi-card scripts (train_*_8p.sh) call modelzoo_train_ranks in
# place of modelzoo_train: one process per card, RANK_ID = card, HCCL set up by
# RANK_TABLE_FILE; each card logs to test/output/<card>/, card 0 (the chief)
# writes the checkpoints and the run result.
#
# The caller may set data_path_help (what --data_path must hold, for --help).
# The Ascend template's debugging flags (--over_dump, --data_dump_flag,
# --data_dump_step, --profiling) are accepted; on Ascend they reach the
# NpuOptimizer through MODELZOO_* variables (common/npu_config.py), elsewhere
# the training script says they are ignored.
#
# Works from any current folder; paths may contain spaces.

modelzoo_test_dir=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
model_dir=$(cd "$modelzoo_test_dir/.." && pwd)
modelzoo_common_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
ASCEND_DEVICE_ID=${ASCEND_DEVICE_ID:-0}
RankSize=${RankSize:-1}

data_path=""
precision_mode=${precision_mode:-allow_mix_precision}
device=${device:-auto}
ckpt_path=""
extra_args=()
over_dump=False
data_dump_flag=False
data_dump_step=10
profiling=False

modelzoo_usage() {
    cat <<EOF
usage: bash $(basename "${BASH_SOURCE[2]}") --data_path=<folder> [options] [--other_flag=value ...]

  --data_path=PATH         dataset folder (required)${data_path_help:+
                           $data_path_help}
  --batch_size=N           default $batch_size
  --train_steps=N          training stops at global step N (a resumed run continues
                           up to it)${train_steps:+ (default $train_steps)}
  --train_epochs=N         number of epochs${train_epochs:+ (default $train_epochs)}
  --precision_mode=MODE    allow_mix_precision (default), must_keep_origin_dtype, ...
  --device=auto|npu|gpu|cpu
  --ckpt_path=PATH         checkpoint folder (default: test/output/\$ASCEND_DEVICE_ID/ckpt,
                           or a fresh .../ckpt_perf for performance runs); never the
                           output folder itself, whose files each run replaces
  --over_dump=True|False   Ascend overflow dump into test/output/overflow_dump (default False)
  --data_dump_flag=True|False  Ascend data dump into test/output/data_dump (default False)
  --data_dump_step=N       the step the data dump takes (default 10)
  --profiling=True|False   Ascend profiling into test/output/profiling (default False)
                           (the four are ignored, with one line, on GPUs and CPUs)
  other --flag=value pairs are passed to the training script unchanged.
Output: test/output/\$ASCEND_DEVICE_ID/ (log, loss series, ModelZoo summary).
EOF
}

modelzoo_parse_args() {
    local para
    for para in "$@"; do
        case "$para" in
            --data_path=*) data_path="${para#*=}" ;;
            --batch_size=*) batch_size="${para#*=}" ;;
            --train_steps=*) train_steps="${para#*=}" ;;
            --train_epochs=*) train_epochs="${para#*=}" ;;
            --precision_mode=*) precision_mode="${para#*=}" ;;
            --device=*) device="${para#*=}" ;;
            --ckpt_path=*) ckpt_path="${para#*=}" ;;
            --over_dump=*) over_dump="${para#*=}" ;;
            --data_dump_flag=*) data_dump_flag="${para#*=}" ;;
            --data_dump_step=*) data_dump_step="${para#*=}" ;;
            --profiling=*) profiling="${para#*=}" ;;
            --help|-h|--h) modelzoo_usage; exit 0 ;;
            --*=*) extra_args+=("$para") ;;
            *) echo "[Error] unknown argument: $para (see --help)" >&2; exit 1 ;;
        esac
    done
    if [ -z "$data_path" ]; then
        echo '[Error] para "data_path" must be config' >&2
        exit 1
    fi
    local name value
    for name in batch_size train_steps train_epochs data_dump_step; do
        value="${!name}"
        if [ -n "$value" ] && ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
            echo "[Error] --$name must be a positive integer, got '$value'" >&2
            exit 1
        fi
    done
    # RankSize (the environment's, as in the Ascend template) names the card
    # count in the summary: a bad one would fail only after training.
    if ! [[ "$RankSize" =~ ^[1-9][0-9]*$ ]]; then
        echo "[Error] RankSize must be a positive integer, got '$RankSize'" >&2
        exit 1
    fi
    for name in over_dump data_dump_flag profiling; do
        case "${!name}" in
            True|False) ;;
            *) echo "[Error] --$name must be True or False, got '${!name}'" >&2; exit 1 ;;
        esac
    done
}

# The dump and profiling folders of the Ascend template, handed to the
# training process (common/npu_config.py reads them).
modelzoo_debug_options() {
    local output="$modelzoo_test_dir/output"
    unset MODELZOO_OVER_DUMP_PATH MODELZOO_DATA_DUMP_PATH MODELZOO_DATA_DUMP_STEP \
        MODELZOO_PROFILING_PATH
    if [ "$over_dump" = True ]; then
        export MODELZOO_OVER_DUMP_PATH="$output/overflow_dump"
        mkdir -p "$MODELZOO_OVER_DUMP_PATH"
    fi
    if [ "$data_dump_flag" = True ]; then
        export MODELZOO_DATA_DUMP_PATH="$output/data_dump" MODELZOO_DATA_DUMP_STEP="$data_dump_step"
        mkdir -p "$MODELZOO_DATA_DUMP_PATH"
    fi
    if [ "$profiling" = True ]; then
        export MODELZOO_PROFILING_PATH="$output/profiling"
        mkdir -p "$MODELZOO_PROFILING_PATH"
    fi
}

# Moves an existing folder aside, to <folder>.<date>[-n]: a script deletes no checkpoint.
modelzoo_move_aside() {
    local folder="$1" stamp target n=1
    stamp=$(date -r "$folder" +%Y%m%d-%H%M%S)
    target="$folder.$stamp"
    while [ -e "$target" ]; do target="$folder.$stamp-$n"; n=$((n + 1)); done
    mv "$folder" "$target"
    echo "[modelzoo] the earlier performance run's checkpoints were moved to $target"
}

modelzoo_prepare_output() {
    # The device id names a folder under test/output that is cleared: '..',
    # '/' or a path would clear files outside this device's folder.
    case "$ASCEND_DEVICE_ID" in
        .|..|*[!A-Za-z0-9_.-]*)
            echo "[Error] ASCEND_DEVICE_ID must be a device number or a plain name" \
                "(letters, digits, '_', '-', '.'), got '$ASCEND_DEVICE_ID'" >&2
            exit 1 ;;
    esac
    output_dir="$modelzoo_test_dir/output/$ASCEND_DEVICE_ID"
    mkdir -p "$output_dir"
    if [ -n "$ckpt_path" ]; then
        # The output folder's files are replaced by each run: checkpoints there
        # (or in a folder above it) would be deleted.
        local real_ckpt real_output
        real_ckpt=$(realpath -m "$ckpt_path")
        real_output=$(realpath -m "$output_dir")
        case "$real_output/" in
            "$real_ckpt"/*)
                echo "[Error] $ckpt_path: --ckpt_path must not be the script's output folder" \
                    "$output_dir or a folder above it (each run replaces its files); use a" \
                    "folder of its own, e.g. $output_dir/ckpt" >&2
                exit 1 ;;
        esac
    fi
    # Clear the previous run's logs and summaries of this device only; folders
    # (checkpoints) stay so that the same command resumes.
    find "$output_dir" -maxdepth 1 -type f -delete
    if [ -z "$ckpt_path" ]; then
        if [ "${1:-}" = perf ]; then
            # A performance run measures training from scratch: its own default
            # checkpoint folder starts empty (a --ckpt_path given is never touched).
            ckpt_path="$output_dir/ckpt_perf"
            if [ -d "$ckpt_path" ] && [ -n "$(ls -A "$ckpt_path")" ]; then
                modelzoo_move_aside "$ckpt_path"
            fi
        else
            ckpt_path="$output_dir/ckpt"
        fi
    fi
    modelzoo_debug_options
    train_log="$output_dir/train_$ASCEND_DEVICE_ID.log"
    result_json="$output_dir/run_result.json"
}

modelzoo_train() {
    echo "[modelzoo] $Network: training, log in $train_log"
    local start end
    start=$(date +%s)
    "$@" 2>&1 | tee "$train_log"
    train_status=${PIPESTATUS[0]}
    end=$(date +%s)
    e2e_time=$((end - start))
    if [ "$train_status" -ne 0 ]; then
        echo "[Error] $Network training failed with exit status $train_status; see $train_log" >&2
        exit "$train_status"
    fi
}

modelzoo_finish() {
    "$PYTHON" "$modelzoo_common_dir/modelzoo_summary.py" --network="$Network" \
        --batch_size="$batch_size" --rank_size="$RankSize" --result_json="$result_json" \
        --e2e_time="$e2e_time" --output_dir="$output_dir" --mode="$1"
}

modelzoo_train_ranks() {
    if [ -z "${RANK_TABLE_FILE:-}" ] || [ ! -f "$RANK_TABLE_FILE" ]; then
        echo "[Error] RANK_TABLE_FILE must name the HCCL rank table file, got '${RANK_TABLE_FILE:-}'" >&2
        exit 1
    fi
    RankSize=${RANK_SIZE:-8}
    echo "[modelzoo] $Network: training on $RankSize cards, logs in $modelzoo_test_dir/output/<card>/"
    local start end rank other pids=() status
    start=$(date +%s)
    for ((rank = 0; rank < RankSize; rank++)); do
        mkdir -p "$modelzoo_test_dir/output/$rank"
        ASCEND_DEVICE_ID=$rank RANK_ID=$rank RANK_SIZE=$RankSize \
            "$@" > "$modelzoo_test_dir/output/$rank/train_$rank.log" 2>&1 &
        pids+=($!)
    done
    # Poll rather than wait in order: a failed card stops the others, which
    # would otherwise block in HCCL collectives.
    train_status=0
    local running=$RankSize
    while [ "$running" -gt 0 ]; do
        running=0
        for rank in "${!pids[@]}"; do
            [ -n "${pids[$rank]}" ] || continue
            if kill -0 "${pids[$rank]}" 2>/dev/null; then
                running=$((running + 1))
                continue
            fi
            wait "${pids[$rank]}"
            status=$?
            pids[$rank]=""
            if [ "$status" -ne 0 ] && [ "$train_status" -eq 0 ]; then
                train_status=$status
                echo "[Error] card $rank failed with exit status $status; see $modelzoo_test_dir/output/$rank/train_$rank.log" >&2
                for other in "${pids[@]}"; do [ -n "$other" ] && kill "$other" 2>/dev/null; done
            fi
        done
        [ "$running" -gt 0 ] && sleep 1
    done
    end=$(date +%s)
    e2e_time=$((end - start))
    cat "$train_log"
    [ "$train_status" -eq 0 ] || exit "$train_status"
}
