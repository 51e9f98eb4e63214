#!/usr/bin/env bash
# Full Git-loss recipe on MNIST (8000 steps, validation every 1000): gitloss.py.
# Plots and loss+perf_gpu.txt go to test/output/$ASCEND_DEVICE_ID/.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
Network="Gitloss_ID1277_for_TensorFlow"
data_path_help="MNIST: {train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte (or .gz)"
batch_size=128
train_steps=8000
modelzoo_parse_args "$@"
modelzoo_prepare_output
modelzoo_train "$PYTHON" "$model_dir/gitloss.py" --data_path="$data_path" \
    --update_centers=1000 --lambda_c=1.0 --lambda_g=1.0 --steps="$train_steps" \
    --batch_size="$batch_size" --precision_mode="$precision_mode" --device="$device" \
    --ckpt_path="$ckpt_path" --exp_save_dir="$output_dir" --result_json="$result_json" \
    "${extra_args[@]}"
modelzoo_finish acc
