"""ci/model_import.py keeps same-named modules of different model folders apart."""
import sys

import pytest

from ci import model_import


@pytest.fixture
def two_models(tmp_path, monkeypatch):
    for folder, tag in (('Face-ResNet50_ID1372', 'face'), ('InsightFace_TF', 'insight')):
        (tmp_path / folder / 'data').mkdir(parents=True)
        (tmp_path / folder / 'utils.py').write_text('TAG = %r\n' % tag)
        (tmp_path / folder / 'data' / '__init__.py').write_text('')
        (tmp_path / folder / 'data' / 'reader.py').write_text(
            'import utils\nTAG = utils.TAG\n')
    monkeypatch.setattr(model_import, 'REPO_ROOT', str(tmp_path))
    yield
    for name in ('utils', 'data', 'data.reader'):
        sys.modules.pop(name, None)


def test_same_named_modules_do_not_leak(two_models):
    face_utils = model_import.import_model_module('Face-ResNet50_ID1372', 'utils')
    insight_reader = model_import.import_model_module('InsightFace_TF', 'data.reader')
    face_reader = model_import.import_model_module('Face-ResNet50_ID1372', 'data.reader')
    assert face_utils.TAG == 'face'
    assert insight_reader.TAG == 'insight'
    assert face_reader.TAG == 'face'
    assert insight_reader is not face_reader


def test_unknown_folder_is_refused():
    with pytest.raises(ValueError, match='unknown model folder'):
        model_import.import_model_module('NoSuchModel', 'utils')
