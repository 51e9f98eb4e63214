#!/usr/bin/env bash
# InsightFace (LResNet100E-IR, ArcFace) throughput on 8 Ascend cards: a short
# train_nets.py run (100 steps of batch 32 per card), then verification on the
# .bin sets in --data_path. One process per card (RANK_ID = card) joined by HCCL
# through the rank table in RANK_TABLE_FILE (required; RANK_SIZE defaults to
# 8); FPS counts the images of all cards. Unless --ckpt_path is given it starts
# from scratch in test/output/0/ckpt_perf. Card i logs to
# test/output/i/train_i.log; card 0 writes the checkpoints and the run result,
# summarised in test/output/0/ with RankSize=8.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../common/modelzoo_test.sh"
source "$modelzoo_test_dir/insightface_args.sh"
Network="InsightFace_TF_for_TensorFlow"
batch_size=32
train_steps=100
modelzoo_parse_args "$@"
insightface_refuse_train_epochs
modelzoo_prepare_output perf
insightface_data_args
modelzoo_train_ranks "$PYTHON" "$model_dir/train_nets.py" "${data_args[@]}" \
    --net_depth=100 --batch_size="$batch_size" --max_steps="$train_steps" \
    --precision_mode="$precision_mode" --device="$device" --ckpt_path="$ckpt_path" \
    --result_json="$result_json" "${extra_args[@]}"
modelzoo_finish perf
