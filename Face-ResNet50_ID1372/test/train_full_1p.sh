#!/usr/bin/env bash
# Face-ResNet50_ID1372: the full recipe (100 epochs of TrainResNet.py), with the
# held-out accuracy as TrainAccuracy. Resumes from the checkpoints in --ckpt_path;
# run again after it completed, it moves the finished checkpoint folder aside
# (<ckpt>.<date>) and trains again.
# Data: <data_path>/label/{label,name}_1200.npy, <data_path>/CACD2000_Crop/,
# <data_path>/train_data/1200_data.npy (built on the first run).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
Network="Face-ResNet50_ID1372_for_TensorFlow"
data_path_help="label/label_1200.npy, label/name_1200.npy, CACD2000_Crop/ (train_data/ is made)"
batch_size=32
train_epochs=100
train_steps=""
modelzoo_parse_args "$@"
modelzoo_prepare_output
step_limit=()
[ -z "$train_steps" ] || step_limit=(--max_steps="$train_steps")
modelzoo_train "$PYTHON" "$model_dir/TrainResNet.py" \
    --label_path="$data_path/label/label_1200.npy" \
    --image_name_path="$data_path/label/name_1200.npy" \
    --train_data_path="$data_path/train_data/1200_data.npy" \
    --parentPath="$data_path/CACD2000_Crop" \
    --epochs="$train_epochs" --batch_size="$batch_size" "${step_limit[@]}" \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --result_json="$result_json" --summary_path="$output_dir/tensorboard" \
    --restart_completed=True "${extra_args[@]}"
modelzoo_finish acc
