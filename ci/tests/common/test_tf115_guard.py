"""The project's Python must run on TF 1.15 / Python 3.7 (the Ascend stack)."""
import textwrap

import pytest

from ci import tf115_api


@pytest.fixture(scope='module')
def api():
    return tf115_api.load_api()


def test_committed_api_list_is_tf115(api):
    # Spot checks against what TF 1.15's compat.v1 is known to have and lack.
    assert 'MomentumOptimizer' in api['train']
    assert 'MixedPrecisionLossScaleOptimizer' in api['train.experimental']
    assert 'conv2d' in api['nn'] and 'fused_batch_norm' in api['nn']
    assert 'disable_v2_behavior' in api['']
    assert 'gelu' not in api['nn']            # added in TF 2.4
    assert 'MirroredStrategy' in api['distribute']
    assert sum(len(names) for names in api.values()) > 3000


def test_project_is_tf115_and_py37_clean(api):
    problems = tf115_api.check_tree(api=api)
    assert problems == [], '\n'.join(problems)


def test_guard_catches_known_bad_snippets(api):
    bad = textwrap.dedent('''\
        import tensorflow.compat.v1 as tf
        from tensorflow.compat.v1.nn import gelu
        y = tf.nn.gelu(tf.constant(1.0))
        z = tf.random.stateless_binomial
        keys = tf.GraphKeys.UPDATE_OPS
        ok = tf.train.experimental.MixedPrecisionLossScaleOptimizer
        ''')
    problems = tf115_api.check_source(bad, 'bad.py', api)
    assert problems == ['bad.py:2: tf.nn.gelu is not in TF 1.15',
                        'bad.py:3: tf.nn.gelu is not in TF 1.15',
                        'bad.py:4: tf.random.stateless_binomial is not in TF 1.15']


@pytest.mark.parametrize('snippet', [
    'if (n := 3) > 2:\n    pass\n',            # walrus, 3.8
    'def f(a, /, b):\n    return a\n',           # positional-only, 3.8
    'match x:\n    case 1:\n        pass\n',     # 3.10
])
def test_guard_catches_newer_syntax(api, snippet):
    problems = tf115_api.check_source(snippet, 'new.py', api)
    assert len(problems) == 1 and 'not Python 3.7 syntax' in problems[0]


def test_other_aliases_are_followed(api):
    source = 'from tensorflow.compat import v1 as tf1\nx = tf1.nn.silu\n'
    assert tf115_api.check_source(source, 'a.py', api) == ['a.py:2: tf.nn.silu is not in TF 1.15']
