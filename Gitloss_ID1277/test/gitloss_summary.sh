# The Gitloss ModelZoo scripts' own result files, after modelzoo_finish.
# Sourced by train_full_1p.sh and train_performance_1p.sh, not run.
#
#   gitloss_finish acc|perf
#
# Parses train_$ASCEND_DEVICE_ID.log with the reference scripts' grep/awk
# commands (train_time is field 22 of gitloss.py's line, 18 of
# gitloss_perf.py's; Train_Acc field 9 of the perf line) and writes what they
# wrote beside the summary: train_<id>_traintime.txt (the train_time values
# but the first, which includes graph compilation), train_<id>_traintime_avg.txt
# ("Avg =  <mean>"), for perf train_<CaseName>_acc.txt; prints the
# reference's "ActualLoss : " and, perf, "Final Performance sec/epoch : "
# lines ("Final Train Accuracy : " is modelzoo_finish's, the summary's
# TrainAccuracy). Then gitloss_modelzoo.py puts ActualLoss
# before TrainAccuracy in <CaseName>.log (the reference's order) and draws
# loss.png and accuracy.png from the same log lines.

gitloss_finish() {
    local mode=$1 field=22
    [ "$mode" = perf ] && field=18
    local case_name="${Network}_bs${batch_size}_${RankSize}p_${mode}"
    local traintime="$output_dir/train_${ASCEND_DEVICE_ID}_traintime.txt"
    grep "train_time" "$train_log" | awk '{print $'"$field"'}' | tail -n +2 > "$traintime"
    if [ ! -s "$traintime" ]; then
        # One evaluation only: the reference's average would divide by zero.
        grep "train_time" "$train_log" | awk '{print $'"$field"'}' > "$traintime"
    fi
    awk '{sum+=$1} END {print "Avg = ",sum/NR}' "$traintime" \
        > "$output_dir/train_${ASCEND_DEVICE_ID}_traintime_avg.txt"
    local training_time
    training_time=$(grep 'Avg' "$output_dir/train_${ASCEND_DEVICE_ID}_traintime_avg.txt" \
        | awk '{print $3}')
    if [ "$mode" = perf ]; then
        echo "Final Performance sec/epoch : $training_time"
        grep 'Train_Acc:' "$train_log" | awk '{print $9}' | tail -n +2 \
            > "$output_dir/train_${case_name}_acc.txt"
    fi
    echo "ActualLoss : $(awk 'END {print}' "$output_dir/train_${case_name}_loss.txt")"
    "$PYTHON" "$model_dir/gitloss_modelzoo.py" --train_log="$train_log" \
        --summary="$output_dir/${case_name}.log" --mode="$mode"
}

# --train_steps and --train_epochs both say where training stops (the global
# step, or the epoch count): one of them, not both.
gitloss_stop_flag() {
    local para steps_given=""
    for para in "$@"; do
        case "$para" in --train_steps=*) steps_given=1 ;; esac
    done
    for para in "$@"; do
        case "$para" in
            --train_epochs=*)
                if [ -n "$steps_given" ]; then
                    echo "[Error] give --train_steps or --train_epochs, not both" >&2
                    exit 1
                fi ;;
        esac
    done
}

# The Python flag that stops training: --train_epochs when given, else --steps.
gitloss_stop_arg() {
    if [ -n "${train_epochs:-}" ]; then
        echo "--train_epochs=$train_epochs"
    else
        echo "--steps=$train_steps"
    fi
}
