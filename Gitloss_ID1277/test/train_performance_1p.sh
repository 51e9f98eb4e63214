#!/usr/bin/env bash
# Git-loss training throughput on MNIST: a short gitloss_perf.py run (200 steps),
# its log line every 50 steps; loss+perf_gpu.txt, TensorBoard runs, loss.png
# and accuracy.png go to test/output/$ASCEND_DEVICE_ID/.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
source "$modelzoo_test_dir/gitloss_summary.sh"
Network="Gitloss_ID1277_for_TensorFlow"
data_path_help="MNIST: {train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte (or .gz)"
batch_size=128
train_steps=200
gitloss_stop_flag "$@"
modelzoo_parse_args "$@"
modelzoo_prepare_output perf
modelzoo_train "$PYTHON" "$model_dir/gitloss_perf.py" --data_path="$data_path" \
    --update_centers=50 "$(gitloss_stop_arg)" --batch_size="$batch_size" \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --exp_save_dir="$output_dir" --result_json="$result_json" "${extra_args[@]}"
modelzoo_finish perf
gitloss_finish perf
