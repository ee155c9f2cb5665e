"""``python -m beam_pipelines.score``."""

import sys

from beam_pipelines.score.launcher import main

sys.exit(main(sys.argv[1:]))
