"""Training: typed configuration, ``tf.distribute`` strategies, callbacks and ``tfrs-selreg train``.

``train.train(TrainConfig) -> RunResult`` is the library entry point and ``train.main(argv)`` the
command; ``run.load_run(run_dir)`` restores a trained model for evaluation and export.
"""
