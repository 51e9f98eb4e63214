"""The network's input normalisation, one definition for training and evaluation.

uint8 BGR pixels x become float32 (x - INPUT_MEAN) * INPUT_SCALE, that is
(x - 127.5) / 128, as in the reference (and the insightface model zoo).
"""
INPUT_MEAN = 127.5
INPUT_SCALE = 0.0078125  # 1 / 128
