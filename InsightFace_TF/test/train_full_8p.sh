#!/usr/bin/env bash
# Full InsightFace recipe on 8 Ascend cards: LResNet100E-IR + ArcFace, batch 32
# per card, the reference's 200 epochs (--train_steps=N stops at global step N),
# validation every 2000 steps on every card. One train_nets.py process per card
# (RANK_ID = card) joined by HCCL through the rank table in RANK_TABLE_FILE
# (required; RANK_SIZE defaults to 8); each reads every RANK_SIZE-th TFRecord
# record, so a step covers RANK_SIZE x batch_size images. Card i logs to
# test/output/i/train_i.log; card 0 writes the checkpoints (--ckpt_path, shared
# by all cards; resumes), summaries, validation history and the run result,
# summarised in test/output/0/ with RankSize=8.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
source "$modelzoo_test_dir/insightface_args.sh"
Network="InsightFace_TF_for_TensorFlow"
batch_size=32
train_epochs=200
modelzoo_parse_args "$@"
modelzoo_prepare_output
insightface_data_args
modelzoo_train_ranks "$PYTHON" "$model_dir/train_nets.py" "${data_args[@]}" \
    --net_depth=100 --batch_size="$batch_size" --epoch="$train_epochs" \
    ${train_steps:+--max_steps="$train_steps"} \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --result_json="$result_json" "${extra_args[@]}"
modelzoo_finish acc
