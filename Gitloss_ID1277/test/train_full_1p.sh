#!/usr/bin/env bash
# Full Git-loss recipe on MNIST (8000 steps, validation every 1000): gitloss.py.
# Plots, loss+perf_gpu.txt, TensorBoard runs (tensorboard/), loss.png and
# accuracy.png go to test/output/$ASCEND_DEVICE_ID/. Run again after it
# completed, it moves the finished checkpoint folder aside and trains again.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
source "$modelzoo_test_dir/gitloss_summary.sh"
Network="Gitloss_ID1277_for_TensorFlow"
data_path_help="MNIST: {train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte (or .gz)"
batch_size=128
train_steps=8000
gitloss_stop_flag "$@"
modelzoo_parse_args "$@"
modelzoo_prepare_output
modelzoo_train "$PYTHON" "$model_dir/gitloss.py" --data_path="$data_path" \
    --update_centers=1000 --lambda_c=1.0 --lambda_g=1.0 "$(gitloss_stop_arg)" \
    --batch_size="$batch_size" --precision_mode="$precision_mode" --device="$device" \
    --ckpt_path="$ckpt_path" --exp_save_dir="$output_dir" --result_json="$result_json" \
    --restart_completed=True "${extra_args[@]}"
modelzoo_finish acc
gitloss_finish acc
