"""TensorFlow's own log lines in a process's output: what a quiet entry point
must not show (common/quiet_tf.py). Used by the recipes' script tests."""
import re

TF_LOG_LINE = re.compile(
    r'^([IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]'                    # absl C++ (TF 2.16+)
    r'|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] [\w/.]+:\d+\]'    # TF C++ (TF 1.15-2.15)
    r'|WARNING: All log messages before absl::InitializeLog'
    r'|(WARNING|INFO):tensorflow:'                                   # TF's Python logger
    r'|Instructions for updating:'
    r'|.*\b(DeprecationWarning|FutureWarning|UserWarning):)')


def tensorflow_log_lines(text):
    """The lines of ``text`` that TensorFlow (C++ or Python) or a warning wrote."""
    return [line for line in text.splitlines() if TF_LOG_LINE.match(line)]
