"""Using a trained InsightFace model, as the README's "Use a trained model" says.

One module-scoped workspace: the model folder and common/ copied out alone,
the demo data of ``make demo`` (ci/synthetic/insightface.py), a model trained
on it by test/train_full_1p.sh with the demo flags into ./output/ckpt, and
face images taken from its lfw.bin. Every README command of the section runs
as written, from the model folder (``python3`` is this interpreter), and is
checked against what we did not write: TensorFlow 2's tf.saved_model.load,
onnxruntime, onnx and the insightface package's ArcFaceONNX.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from ci.model_import import import_model_module
from ci.model_workspace import copy_model_alone
from ci.synthetic import insightface as synthetic
from common.io_utils import InputError

# The README's export converts to ONNX (InsightFace_TF/requirements-deploy.txt;
# not on Python 3.7 / TF 1.15). About 10 minutes on 2 busy cores.
pytest.importorskip('tf2onnx')
pytest.importorskip('onnxruntime')
pytestmark = pytest.mark.slow

MODEL = 'InsightFace_TF'
README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), MODEL, 'README.md')
SECTION = '## Use a trained model'
# The README commands, by what they do; test_readme_commands_are_the_tested_ones
# keeps this list and the README equal.
COMMANDS = {
    'eval': 'python3 eval_ckpt_file.py --ckpt_file=./output/ckpt',
    'export': 'python3 export_model.py --ckpt_file=./output/ckpt --output_dir=./export '
              '--onnx --tflite',
    'compare': 'python3 face_embed.py compare faces/a.jpg faces/b.jpg --model=./output/ckpt',
    'compare_onnx': 'python3 face_embed.py compare faces/a.jpg faces/b.jpg '
                    '--model=./export/insightface_r50.onnx',
    'folder': 'python3 face_embed.py folder ./faces --output=faces.npz '
              '--model=./export/saved_model',
    'pairs': 'python3 face_embed.py pairs pairs.txt --model=./export/insightface_r50.pb '
             '--output=scores.tsv',
}
COSINE_LINE = re.compile(r'^cosine similarity: (-?\d\.\d{6}) \(squared distance (\d\.\d{6})\)$',
                         re.M)
VERDICT_LINE = re.compile(r'^(same|different) \(threshold: cosine (-?\d\.\d{5}), (.+)\)$', re.M)
ACCURACY_LINE = re.compile(r'^\[lfw\]\[(\d+)\]Accuracy-Flip: (\d\.\d{5})\+-\d\.\d{5}$', re.M)
THRESHOLD_LINE = re.compile(r'^\[lfw\]\[(\d+)\]Threshold: (\d\.\d{5}) squared distance = '
                            r'cosine (-?\d\.\d{5}) ', re.M)
# The demo flags with fewer steps: the checks compare one model's forms, so
# a few steps suffice; training validates once, at its last step.
TRAIN_STEPS = 6
FACES = ('a.jpg', 'b.jpg', 'c.jpg', 'd.jpg')  # pair 0 of lfw.bin (same), pair 1 (different)

# TensorFlow 2 as a user loads the SavedModel: embeddings of the given BGR
# images and of their mirror images; stderr is checked for per-variable warnings.
TF2_LOAD = textwrap.dedent('''
    import sys
    import cv2, numpy as np, tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    run = model.signatures['serving_default']
    images = np.stack([cv2.imread(p) for p in sys.argv[3:]]).astype(np.float32)
    out = {}
    for name, batch in (('plain', images), ('mirrored', images[:, :, ::-1])):
        result = run(img_inputs=tf.constant((batch - 127.5) * 0.0078125))
        out[name + '_embeddings'] = result['embeddings'].numpy()
        out[name + '_raw'] = result['raw_embeddings'].numpy()
    np.savez(sys.argv[2], **out)
''')


def run_in(folder, command, timeout=600):
    """``command`` (a README line) from ``folder``, python3 being this interpreter."""
    argv = shlex.split(command)
    if argv[0] == 'python3':
        argv[0] = sys.executable
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID='0',
               TF_CPP_MIN_LOG_LEVEL='2')
    return subprocess.run(argv, cwd=str(folder), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def must_pass(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def readme_section():
    with open(README) as f:
        text = f.read()
    start = text.index(SECTION)
    end = text.find('\n## ', start + len(SECTION))
    return text[start:end if end > 0 else len(text)]


def readme_blocks():
    """The section's indented code blocks, dedented, in order."""
    blocks, current = [], []
    for line in readme_section().split('\n') + ['(end)']:
        if line.startswith('    ') or (current and not line.strip()):
            current.append(line)
        elif current:
            blocks.append(textwrap.dedent('\n'.join(current)).strip())
            current = []
    return [b for b in blocks if b]


def readme_commands():
    commands = []
    for block in readme_blocks():
        for line in block.replace('\\\n', ' ').split('\n'):
            line = re.sub(r'\s+', ' ', line.split('  #')[0]).strip()
            if line.startswith('python3 '):
                commands.append(line)
    return commands


def readme_snippet(first_line):
    """The README's Python block that starts with ``first_line``."""
    matches = [b for b in readme_blocks() if b.split('\n', 1)[0] == first_line]
    assert len(matches) == 1, first_line
    return matches[0]


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
    """The copied model folder with ./output/ckpt trained on the demo data,
    faces/ and pairs.txt; the training's stdout."""
    parent = tmp_path_factory.mktemp('use')
    model = copy_model_alone(parent, MODEL)
    data, flags = synthetic.make_demo_dataset(str(parent / 'demo data'))
    training = must_pass(run_in(model, ' '.join(
        ['bash', 'test/train_full_1p.sh', shlex.quote('--data_path=%s' % data),
         '--ckpt_path=./output/ckpt'] + flags + ['--train_steps=%d' % TRAIN_STEPS])))
    eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
    bins, issame = eval_data_reader.read_bin_pickle(os.path.join(data, 'lfw.bin'))
    assert list(issame[:2]) == [True, False]
    (model / 'faces').mkdir()
    for name, encoded in zip(FACES, bins):
        (model / 'faces' / name).write_bytes(encoded)
    (model / 'pairs.txt').write_text('faces/a.jpg faces/b.jpg 1\nfaces/c.jpg faces/d.jpg 0\n')
    return {'model': model, 'data': data, 'training': training.stdout}


@pytest.fixture(scope='module')
def exported(zoo):
    proc = must_pass(run_in(zoo['model'], COMMANDS['export']))
    return proc


@pytest.fixture(scope='module')
def saved_model_outputs(zoo, exported, tmp_path_factory):
    """TF 2's embeddings of FACES from the SavedModel, and its stderr."""
    out = tmp_path_factory.mktemp('tf2') / 'outputs.npz'
    proc = must_pass(run_in(zoo['model'], ' '.join(
        ['python3', '-c', shlex.quote(TF2_LOAD), './export/saved_model', shlex.quote(str(out))]
        + ['faces/%s' % name for name in FACES])))
    with np.load(str(out)) as outputs:
        return dict(outputs), proc.stderr


def bgr_faces(zoo):
    return [cv2.imread(str(zoo['model'] / 'faces' / name)) for name in FACES]


def unit(rows):
    rows = np.asarray(rows, np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def flip_summed(outputs):
    return unit(outputs['plain_raw'].astype(np.float64) + outputs['mirrored_raw'])


def printed_cosine(proc):
    found = COSINE_LINE.findall(proc.stdout)
    assert len(found) == 1, proc.stdout
    return float(found[0][0])


# ------------------------------------------------------------ README and run config

def test_readme_commands_are_the_tested_ones():
    assert readme_commands() == list(COMMANDS.values())


def test_run_config_describes_the_checkpoints(zoo):
    with open(str(zoo['model'] / 'output' / 'ckpt' / 'run_config.json')) as f:
        config = json.load(f)
    assert config['recipe'] == MODEL and config['format_version'] == 1
    assert config['network'] == {'net_name': 'L_Resnet_E_IR_fix_issue9', 'net_depth': 50,
                                 'unit_type': 'ir', 'image_size': [112, 112],
                                 'embedding_size': 512}
    assert config['input']['channel_order'] == 'BGR'
    assert (config['input']['mean'], config['input']['scale']) == (127.5, 1 / 128.0)
    assert config['num_output'] == synthetic.DEMO_CLASSES
    assert config['loss'] == {'loss_type': 'arcface', 'margin_s': 64.0, 'margin_m': 0.5,
                              'margin_a': 1.0, 'margin_b': 0.2}
    assert config['data']['eval_db_path'] == os.path.abspath(zoo['data'])
    assert config['data']['eval_datasets'] == ['lfw']
    # The one validation (the last step) as the training printed it.
    (step, accuracy), = ACCURACY_LINE.findall(zoo['training'])
    (_, distance, cosine), = THRESHOLD_LINE.findall(zoo['training'])
    validation, = config['validations']
    assert validation['step'] == int(step) == TRAIN_STEPS
    assert validation['checkpoint'] == 'InsightFace_iter_%d.ckpt' % TRAIN_STEPS
    scores = validation['sets']['lfw']
    assert scores['accuracy'] == float(accuracy)
    assert scores['threshold_distance'] == float(distance)
    assert scores['threshold_cosine'] == pytest.approx(1 - float(distance) / 2, abs=1e-9)
    assert scores['threshold_cosine'] == float(cosine)
    best = config['best']
    assert (best['step'], best['accuracy'], best['dataset']) == (
        TRAIN_STEPS, float(accuracy), 'lfw')
    assert os.path.isfile(str(zoo['model'] / 'output' / 'ckpt' / (best['checkpoint'] + '.index')))


def test_verification_prints_val_at_its_target_and_the_threshold(zoo):
    line = re.search(r'^\[lfw\]\[%d\]VAL@FAR=1e-3: (\d\.\d{5})\+-(\d\.\d{5}) '
                     r'\(measured FAR (\d\.\d{5})\)$' % TRAIN_STEPS, zoo['training'], re.M)
    assert line, zoo['training'][-2000:]
    assert 0 <= float(line.group(3)) <= 1
    assert THRESHOLD_LINE.search(zoo['training'])


def test_eval_needs_no_network_flags(zoo):
    proc = must_pass(run_in(zoo['model'], COMMANDS['eval']))
    assert 'Network from %s' % (zoo['model'] / 'output' / 'ckpt' / 'run_config.json') in \
        proc.stdout
    (_, accuracy), = ACCURACY_LINE.findall(proc.stdout)
    (_, trained), = ACCURACY_LINE.findall(zoo['training'])
    # The same weights and sets; training validated in mixed precision, this in fp32.
    assert abs(float(accuracy) - float(trained)) <= 0.05


def test_a_flag_contradicting_the_run_config_is_one_error_line(zoo):
    proc = run_in(zoo['model'], COMMANDS['eval'] + ' --net_depth=100')
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        '[Error] %s: --net_depth=100 contradicts the checkpoint, trained with net_depth=50; '
        'drop the flag' % (zoo['model'] / 'output' / 'ckpt' / 'run_config.json'))


# ------------------------------------------------------------ export

def test_saved_model_loads_in_tf2_without_variable_warnings(saved_model_outputs):
    outputs, stderr = saved_model_outputs
    assert 'Unable to create a python object for variable' not in stderr
    np.testing.assert_allclose(outputs['plain_embeddings'], unit(outputs['plain_raw']),
                               atol=1e-5)


def test_onnx_matches_the_saved_model(zoo, exported, saved_model_outputs):
    import onnx
    import onnxruntime
    report = re.search(r'^ONNX: \./export/insightface_r50\.onnx \(opset 13, converted in '
                       r'([\d.]+) s\); onnxruntime and the SavedModel agree on 4 check images: '
                       r'max \|difference\| of the L2-normalised embeddings ([\d.e+-]+) '
                       r'\(limit 0\.0001\)$', exported.stdout, re.M)
    assert report, exported.stdout
    path = str(zoo['model'] / 'export' / 'insightface_r50.onnx')
    model = onnx.load(path)
    onnx.checker.check_model(model)
    first = [node.name for node in model.graph.node[:8]]
    assert first[:2] == ['Sub', 'Mul'], first
    (source,), (target,) = model.graph.input, model.graph.output
    assert source.name == 'data' and target.name == 'raw_embeddings'
    assert [d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim] == \
        ['N', 3, 112, 112]
    assert [d.dim_param or d.dim_value for d in target.type.tensor_type.shape.dim] == ['N', 512]

    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    rgb = np.stack(bgr_faces(zoo))[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    raw = session.run(['raw_embeddings'], {'data': rgb})[0]
    outputs, _ = saved_model_outputs
    difference = np.abs(unit(raw) - outputs['plain_embeddings']).max()
    print('onnxruntime vs SavedModel on the demo faces: max |difference| %.3g' % difference)
    assert difference <= 1e-4
    with open(str(zoo['model'] / 'export' / 'run_config.json')) as f:
        export = json.load(f)['export']
    assert export['step'] == TRAIN_STEPS and export['onnx']['input'] == 'data'
    assert export['onnx']['check_max_difference'] <= 1e-4


def test_tflite_converts_and_agrees(zoo, exported):
    assert os.path.getsize(str(zoo['model'] / 'export' / 'insightface_r50.tflite')) > 1e6
    assert re.search(r'^TFLite: .*the TFLite interpreter and the SavedModel agree on 4 check '
                     r'images: max \|difference\| ', exported.stdout, re.M)


def test_arcface_onnx_of_the_insightface_package_uses_it_unchanged(zoo, exported,
                                                                    saved_model_outputs):
    pytest.importorskip('insightface')
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    model = ArcFaceONNX(model_file=str(zoo['model'] / 'export' / 'insightface_r50.onnx'))
    model.prepare(ctx_id=-1)
    # It found the Sub/Mul normalisation, so it feeds raw pixels.
    assert (model.input_mean, model.input_std, model.input_size) == (0.0, 1.0, (112, 112))
    features = model.get_feat(bgr_faces(zoo))
    outputs, _ = saved_model_outputs
    cosines = np.sum(unit(features) * outputs['plain_embeddings'], axis=1)
    print('ArcFaceONNX vs SavedModel cosines: %s' % cosines)
    assert cosines.min() > 0.9999


def unflipped_cosine(saved_model_outputs):
    outputs, _ = saved_model_outputs
    return float(np.dot(outputs['plain_embeddings'][0], outputs['plain_embeddings'][1]))


def snippet_cosine(zoo, first_line):
    proc = must_pass(run_in(zoo['model'], 'python3 -c %s'
                            % shlex.quote(readme_snippet(first_line))))
    return float(re.search(r'^cosine (-?\d\.\d+)$', proc.stdout, re.M).group(1))


def test_readme_arcface_onnx_snippet(zoo, exported, saved_model_outputs):
    pytest.importorskip('insightface')
    cosine = snippet_cosine(zoo, 'from insightface.model_zoo.arcface_onnx import ArcFaceONNX')
    assert cosine == pytest.approx(unflipped_cosine(saved_model_outputs), abs=1e-4)


def test_readme_onnxruntime_snippet(zoo, exported, saved_model_outputs):
    cosine = snippet_cosine(zoo, 'import onnxruntime')
    assert cosine == pytest.approx(unflipped_cosine(saved_model_outputs), abs=1e-4)


# ------------------------------------------------------------ face_embed.py

def test_compare_prints_the_cosine_of_the_exported_embeddings(zoo, exported, saved_model_outputs):
    proc = must_pass(run_in(zoo['model'], COMMANDS['compare']))
    cosine = printed_cosine(proc)
    outputs, _ = saved_model_outputs
    embeddings = flip_summed(outputs)  # verification's flip-sum of the SavedModel's outputs
    assert cosine == pytest.approx(float(np.dot(embeddings[0], embeddings[1])), abs=1e-4)
    with open(str(zoo['model'] / 'output' / 'ckpt' / 'run_config.json')) as f:
        recorded = json.load(f)['validations'][-1]['sets']['lfw']['threshold_cosine']
    (verdict, threshold, source), = VERDICT_LINE.findall(proc.stdout)
    assert float(threshold) == recorded and 'chosen on lfw at step %d' % TRAIN_STEPS in source
    assert verdict == ('same' if cosine > recorded else 'different')
    # Without the flip, the plain dot product of the exported embeddings (the
    # .onnx here and below: it loads faster than the checkpoint).
    plain = must_pass(run_in(zoo['model'], COMMANDS['compare_onnx'] + ' --flip=false'))
    assert printed_cosine(plain) == pytest.approx(
        float(np.dot(outputs['plain_embeddings'][0], outputs['plain_embeddings'][1])), abs=1e-4)
    assert 'different (threshold: cosine 1.00000, --threshold)' in must_pass(run_in(
        zoo['model'], COMMANDS['compare_onnx'] + ' --threshold=1')).stdout


def test_compare_with_the_onnx_gives_the_same_cosine(zoo, exported, saved_model_outputs):
    proc = must_pass(run_in(zoo['model'], COMMANDS['compare_onnx']))
    outputs, _ = saved_model_outputs
    embeddings = flip_summed(outputs)
    assert printed_cosine(proc) == pytest.approx(float(np.dot(embeddings[0], embeddings[1])),
                                                 abs=1e-4)
    assert 'chosen on lfw at step %d' % TRAIN_STEPS in proc.stdout  # export/run_config.json


def test_folder_embeds_every_image(zoo, exported, saved_model_outputs):
    proc = must_pass(run_in(zoo['model'], COMMANDS['folder']))
    assert '100%' in proc.stderr and 'image' in proc.stderr  # the progress bar
    with np.load(str(zoo['model'] / 'faces.npz')) as npz:
        names, embeddings = list(npz['names']), npz['embeddings']
    assert names == list(FACES)
    assert embeddings.shape == (4, 512) and embeddings.dtype == np.float32
    outputs, _ = saved_model_outputs
    np.testing.assert_allclose(embeddings, flip_summed(outputs), atol=1e-4)


def test_pairs_scores_the_list(zoo, exported, saved_model_outputs):
    must_pass(run_in(zoo['model'], COMMANDS['pairs']))
    outputs, _ = saved_model_outputs
    embeddings = flip_summed(outputs)
    rows = [line.split('\t') for line in
            (zoo['model'] / 'scores.tsv').read_text().strip().split('\n')]
    assert [(r[0], r[1], r[3]) for r in rows] == [('faces/a.jpg', 'faces/b.jpg', '1'),
                                                  ('faces/c.jpg', 'faces/d.jpg', '0')]
    assert float(rows[0][2]) == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-4)
    assert float(rows[1][2]) == pytest.approx(float(embeddings[2] @ embeddings[3]), abs=1e-4)
    assert all(r[4] in ('same', 'different') for r in rows)


def test_unaligned_images_get_a_warning_naming_the_alignment_tool(zoo, tmp_path):
    photo = tmp_path / 'photo.jpg'
    cv2.imwrite(str(photo), cv2.resize(bgr_faces(zoo)[0], (150, 200)))
    proc = must_pass(run_in(zoo['model'], 'python3 face_embed.py compare %s faces/b.jpg '
                            '--model=./export/insightface_r50.onnx' % shlex.quote(str(photo))))
    assert ('[Warning] %s: 150x200, not a 112x112 aligned face crop; resized, so its embedding '
            'is unreliable. Align photos first with InsightFace_TF/data/align_faces.py'
            % photo) in proc.stderr
    assert printed_cosine(proc) <= 1


def test_bad_input_is_one_error_line(zoo, exported, tmp_path):
    face_embed = import_model_module(MODEL, 'face_embed')
    onnx_path = str(zoo['model'] / 'export' / 'insightface_r50.onnx')
    model = ['--model=%s' % onnx_path]
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    notes = tmp_path / 'notes'
    notes.mkdir()
    (notes / 'readme.txt').write_text('no images here')
    cases = [
        (['compare', str(tmp_path / 'missing.jpg'), str(broken)] + model,
         '%s: image does not exist' % (tmp_path / 'missing.jpg')),
        (['compare', str(broken), str(broken)] + model, '%s: image does not decode' % broken),
        (['compare', str(broken), str(broken), '--model=%s' % (tmp_path / 'nothing')],
         '%s: no such model (give a checkpoint folder or prefix, a SavedModel folder, a .pb '
         'or an .onnx)' % (tmp_path / 'nothing')),
        (['folder', str(notes), '--output=%s' % (tmp_path / 'e.npz')] + model,
         '%s: holds no .jpg/.jpeg/.png/.bmp images' % notes),
        (['compare', str(broken), str(broken), '--threshold=2'] + model,
         '--threshold is a cosine similarity in [-1, 1], got 2'),
    ]
    for argv, message in cases:
        with pytest.raises(InputError) as error:
            face_embed.main(argv)
        assert str(error.value) == message
    # As a user sees it: one line and exit status 2.
    proc = run_in(zoo['model'], 'python3 face_embed.py compare faces/a.jpg %s --model=%s'
                  % (shlex.quote(str(broken)), shlex.quote(onnx_path)))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == '[Error] %s: image does not decode' % broken
