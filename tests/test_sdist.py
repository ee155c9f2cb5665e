"""The sdist is the whole job: installed alone into a fresh virtualenv, its prepare job runs on the bundled data."""

import os
import subprocess

from tfrs_selreg.data.prepared import PreparedData


def test_the_sdist_alone_prepares_the_bundled_data(installed_sdist, bundled_prepared):
    where = subprocess.run(
        [installed_sdist, "-c", "import beam_pipelines.prepare, tfrs_selreg.configs, tfrs_selreg.data.bundled as b; "
         "print(beam_pipelines.prepare.__file__); print(list(b.__path__)[0])"],
        cwd=os.path.dirname(bundled_prepared), check=True, capture_output=True, text=True).stdout.split()
    venv = os.path.dirname(os.path.dirname(str(installed_sdist)))
    assert all(path.startswith(venv) for path in where), where
    assert os.path.isfile(os.path.join(where[1], "ml-latest-small", "ratings.csv"))
    stats = PreparedData(bundled_prepared).stats()
    assert stats.rows_read["interactions"] == 100836 and stats.users == 610
