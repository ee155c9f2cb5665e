"""Export: a trained backbone as a versioned SavedModel for TF Serving.

- :mod:`~tfrs_selreg.export.signatures`: the serving module (serving variables only) and its
  ``serving_default``, ``score_items`` and ``serving_tf_example`` signatures;
- :mod:`~tfrs_selreg.export.warmup`: ``assets.extra/tf_serving_warmup_requests``;
- :mod:`~tfrs_selreg.export.exporter`: ``tfrs-selreg export`` (``BASE/NAME/VERSION``, written atomically).

Export depends on the models and the schema's serving part only: nothing of the teacher, the gate or
the regularizer reaches a SavedModel.
"""
