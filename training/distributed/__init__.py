"""The backtest and training past one machine: `--engine dask` (docs/dask.md).

The replay is split where the features allow it, merchants' labels apart from users' transactions
(`replay`), and runs on a Dask cluster (`cluster`: a scheduler's address, or a LocalCluster) with the
same pure feature code the Lambda runs, giving the single machine's features bit for bit; the model
is trained on this machine on the gathered features (the single machine's model), or with
`--train-on cluster` by `xgboost.dask` on the features where they lie (`train`). `engine` puts both behind the
interfaces the commands already use; `options` holds the command-line options and imports no Dask.
"""
