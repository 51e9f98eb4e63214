"""argparse value types the training and data scripts share."""
import argparse


def str2bool(text):
    """true/false flags: 1/0, true/false, yes/no (any case)."""
    if text.lower() in ('1', 'true', 'yes'):
        return True
    if text.lower() in ('0', 'false', 'no'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, got %r' % text)


def int_list(text):
    """'112,112' -> [112, 112]; empty items are dropped."""
    try:
        return [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated integers, got %r' % text)


def float_list(text):
    """'0.1,0.01' -> [0.1, 0.01]; empty items are dropped."""
    try:
        return [float(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated numbers, got %r' % text)


def name_list(text):
    """'lfw, cfp_fp' -> ['lfw', 'cfp_fp']; '' -> []."""
    return [v.strip() for v in text.split(',') if v.strip()]
