#!/usr/bin/env bash
# Git-loss training throughput on MNIST: a short gitloss_perf.py run (200 steps).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
Network="Gitloss_ID1277_for_TensorFlow"
data_path_help="MNIST: {train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte (or .gz)"
batch_size=128
train_steps=200
modelzoo_parse_args "$@"
modelzoo_prepare_output perf
modelzoo_train "$PYTHON" "$model_dir/gitloss_perf.py" --data_path="$data_path" \
    --update_centers=50 --steps="$train_steps" --batch_size="$batch_size" \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --result_json="$result_json" "${extra_args[@]}"
modelzoo_finish perf
