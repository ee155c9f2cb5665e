"""Evaluation: full-ranking metrics (``metrics``), sliced by segment over a split (``ranking``), gate and
teacher diagnostics over the training pairs (``diagnostics``) and ``tfrs-selreg evaluate`` (``evaluate``).
"""
