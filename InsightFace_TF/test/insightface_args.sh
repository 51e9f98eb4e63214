# Shared by test/train_*_1p.sh: where the data is and which eval sets exist.
# --data_path holds the training TFRecords (directly, or in a tfrecords/
# sub-folder) and the .bin evaluation sets; every set present is evaluated.
data_path_help="training TFRecords (or a tfrecords/ folder), lfw/cfp_ff/cfp_fp/agedb_30.bin"
insightface_data_args() {
    local tfrecords="$data_path" sets="" name
    [ -d "$data_path/tfrecords" ] && tfrecords="$data_path/tfrecords"
    for name in lfw cfp_ff cfp_fp agedb_30; do
        [ -f "$data_path/$name.bin" ] && sets="${sets:+$sets,}$name"
    done
    data_args=(--tfrecords_file_path="$tfrecords" --eval_db_path="$data_path"
               --eval_datasets="$sets" --summary_path="$output_dir/summary"
               --log_file_path="$output_dir/logs")
}

# The performance scripts train --train_steps steps: an epoch count would be
# silently ignored, so it is refused (train_full_*.sh take --train_epochs).
insightface_refuse_train_epochs() {
    if [ -n "${train_epochs:-}" ]; then
        echo "[Error] --train_epochs: the performance script trains --train_steps steps" \
            "($train_steps); train_full_1p.sh takes --train_epochs" >&2
        exit 1
    fi
}
