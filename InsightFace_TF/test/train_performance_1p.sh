#!/usr/bin/env bash
# InsightFace (LResNet100E-IR, ArcFace) training throughput: a short train_nets.py
# run (100 steps of batch 32), then verification on the .bin sets in --data_path.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
source "$modelzoo_test_dir/insightface_args.sh"
Network="InsightFace_TF_for_TensorFlow"
batch_size=32
train_steps=100
modelzoo_parse_args "$@"
insightface_refuse_train_epochs
modelzoo_prepare_output perf
insightface_data_args
modelzoo_train "$PYTHON" "$model_dir/train_nets.py" "${data_args[@]}" \
    --net_depth=100 --batch_size="$batch_size" --max_steps="$train_steps" \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --result_json="$result_json" "${extra_args[@]}"
modelzoo_finish perf
