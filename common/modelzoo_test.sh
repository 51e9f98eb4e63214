# Shared body of every model's test/train_*_1p.sh (the ModelZoo template).
# Sourced, not run. The caller sets Network and the defaults (batch_size,
# train_steps and/or train_epochs), then calls, in order:
#
#   modelzoo_parse_args "$@"     # --data_path (required) and the overrides
#   modelzoo_prepare_output [perf]  # test/output/$ASCEND_DEVICE_ID: old files of this device go,
#                                # folders stay; perf: a fresh default ckpt_perf folder
#   modelzoo_train CMD ARGS...   # logs, times, keeps the exit status
#   modelzoo_finish perf|acc     # ten-key summary from the run's result file
#
# The Ascend multi-card scripts (train_*_8p.sh) call modelzoo_train_ranks in
# place of modelzoo_train: one process per card, RANK_ID = card, HCCL set up by
# RANK_TABLE_FILE; each card logs to test/output/<card>/, card 0 (the chief)
# writes the checkpoints and the run result.
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

modelzoo_usage() {
    cat <<EOF
usage: bash $(basename "${BASH_SOURCE[2]}") --data_path=<folder> [options] [--other_flag=value ...]

  --data_path=PATH         dataset folder (required)
  --batch_size=N           default $batch_size
  --train_steps=N          number of training steps${train_steps:+ (default $train_steps)}
  --train_epochs=N         number of epochs${train_epochs:+ (default $train_epochs)}
  --precision_mode=MODE    allow_mix_precision (default), must_keep_origin_dtype, ...
  --device=auto|npu|gpu|cpu
  --ckpt_path=PATH         checkpoint folder (default: test/output/\$ASCEND_DEVICE_ID/ckpt,
                           or a fresh .../ckpt_perf for performance runs)
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
            --help|-h) modelzoo_usage; exit 0 ;;
            --*=*) extra_args+=("$para") ;;
            *) echo "[Error] unknown argument: $para (see --help)" >&2; exit 1 ;;
        esac
    done
    if [ -z "$data_path" ]; then
        echo '[Error] para "data_path" must be config' >&2
        exit 1
    fi
    local name value
    for name in batch_size train_steps train_epochs; do
        value="${!name}"
        if [ -n "$value" ] && ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
            echo "[Error] --$name must be a positive integer, got '$value'" >&2
            exit 1
        fi
    done
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
    # Clear the previous run's logs and summaries of this device only; folders
    # (checkpoints) stay so that the same command resumes.
    mkdir -p "$output_dir"
    find "$output_dir" -maxdepth 1 -type f -delete
    if [ -z "$ckpt_path" ]; then
        if [ "${1:-}" = perf ]; then
            # A performance run measures training from scratch: its own default
            # checkpoint folder starts empty (a --ckpt_path given is never cleared).
            ckpt_path="$output_dir/ckpt_perf"
            rm -rf "$ckpt_path"
        else
            ckpt_path="$output_dir/ckpt"
        fi
    fi
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
