#!/usr/bin/env bash
# Full InsightFace recipe: LResNet100E-IR + ArcFace, batch 32, the reference's
# 200 epochs (--train_steps=N stops at global step N), validation every 2000 steps.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
source "$modelzoo_test_dir/insightface_args.sh"
Network="InsightFace_TF_for_TensorFlow"
batch_size=32
train_epochs=200
modelzoo_parse_args "$@"
modelzoo_prepare_output
insightface_data_args
modelzoo_train "$PYTHON" "$model_dir/train_nets.py" "${data_args[@]}" \
    --net_depth=100 --batch_size="$batch_size" --epoch="$train_epochs" \
    ${train_steps:+--max_steps="$train_steps"} \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --restart_completed=True --result_json="$result_json" "${extra_args[@]}"
modelzoo_finish acc
