#!/usr/bin/env bash
# Face-ResNet50_ID1372: a short run of TrainResNet.py (2 epochs, or --train_steps
# steps) that reports training throughput. Unless --ckpt_path is given it starts
# from scratch in test/output/$ASCEND_DEVICE_ID/ckpt_perf, so that every
# performance run measures the same thing (train_full_1p.sh's checkpoints stay).
# Data: <data_path>/label/{label,name}_1200.npy, <data_path>/CACD2000_Crop/,
# <data_path>/train_data/1200_data.npy (built on the first run).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
Network="Face-ResNet50_ID1372_for_TensorFlow"
data_path_help="label/label_1200.npy, label/name_1200.npy, CACD2000_Crop/ (train_data/ is made)"
batch_size=32
train_epochs=2
train_steps=""
modelzoo_parse_args "$@"
modelzoo_prepare_output perf
step_limit=()
[ -z "$train_steps" ] || step_limit=(--max_steps="$train_steps")
modelzoo_train "$PYTHON" "$model_dir/TrainResNet.py" \
    --label_path="$data_path/label/label_1200.npy" \
    --image_name_path="$data_path/label/name_1200.npy" \
    --train_data_path="$data_path/train_data/1200_data.npy" \
    --parentPath="$data_path/CACD2000_Crop" \
    --epochs="$train_epochs" --batch_size="$batch_size" "${step_limit[@]}" \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --result_json="$result_json" --summary_path="$output_dir/tensorboard" "${extra_args[@]}"
modelzoo_finish perf
