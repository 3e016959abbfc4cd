"""`fraudwatch backtest`: replay a labelled history as production would have seen it, train, and score.

The periods start at the UTC midnight of the file's first transaction, or where dates put them: a
training period, a gap (its labels are not yet back when the test starts; neither trained on nor
scored), then the test period; what comes before the training start only warms the profiles.
The whole file is replayed once, in time order, through the Lambda's own profile updates and features
(`training.features.compute_features`) with each fraud label fed back a delay after its transaction;
features do not depend on the model, so one replay serves training and test. The model trained on the
training period is written as a bundle and loaded by the Lambda's model adapter, whose scores and
decisions are the backtest's. Beside it, the baseline (`training.baseline`) and a model trained
identically without the merchant risk features show what the model and its merchant risk add.
Outputs are built in a temporary directory and renamed into place whole.
"""
