"""``python -m beam_pipelines.prepare``."""

import sys

from beam_pipelines.prepare.launcher import main

sys.exit(main(sys.argv[1:]))
