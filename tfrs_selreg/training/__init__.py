"""Training: ``tf.distribute`` strategies, the optimizer, callbacks and ``tfrs-selreg train``.

``train.train(TrainConfig) -> TrainResult`` is the library entry point and ``train.main(argv)`` the
command. The config and the run folder it writes are :mod:`tfrs_selreg.runs`.
"""
