"""Flag helpers shared by the Beam jobs."""

import argparse


def add_flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    """``parser.add_argument`` that tolerates a flag another job already defined.

    Beam puts every ``PipelineOptions`` subclass of the process into one parser, so two jobs imported
    together (``tfrs-selreg run``, the test suite) share flags with the same meaning (``--output``,
    ``--seed``) instead of failing with an argparse conflict. For the same reason no job flag is
    ``required=True``: each job checks its own required flags in ``run()``.
    """
    try:
        parser.add_argument(name, **kwargs)
    except argparse.ArgumentError:
        pass
