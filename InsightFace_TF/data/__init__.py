"""InsightFace_TF data tools: MXNet RecordIO reading/writing, TFRecord output,
image-folder conversion and the evaluation .bin reader/maker."""
