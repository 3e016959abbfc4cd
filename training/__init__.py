"""The training job: labelled history, offline features, training, evaluation and the model bundle."""
