"""sumnet: the article's tiny network that learns to sum 30 numbers.

    python -m sumnet
    python -c "from sumnet.model import Net; print(Net())"

Modules: `model` (Net, NetConfig), `data` (batches, the fixed test set), `train` (TrainConfig,
train, train_step), `evaluate` (metrics and the verdict), `device`, `demo` (`python -m sumnet`),
`cli_args` (what every entry point shares; no torch). Importing the package imports nothing, so
`python -m bench` starts without torch.
"""
