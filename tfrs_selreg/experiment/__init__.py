"""``tfrs-selreg experiment``: backbones x methods x seeds on one dataset, and its paper-style tables.

- :mod:`tfrs_selreg.experiment.config`: the typed YAML config (:class:`ExperimentConfig`);
- :mod:`tfrs_selreg.experiment.workflow`: the cached stages (prepare, score, join, train, evaluate);
- :mod:`tfrs_selreg.experiment.results`: mean/std over seeds and paired tests against the baseline.
"""
