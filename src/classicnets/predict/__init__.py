"""Prediction from a checkpoint alone: a CSV for every input below a path (`writer.predict`), the predictors
behind it (`predictors`), and translations and attention plots of sequence-to-sequence checkpoints (`seq2seq`)."""
