"""The run layer: a composed config becomes objects (`build`), is trained and tested (`pipeline`), and leaves a
run directory behind (`files`, `checkpoints`, `status`, `resume`, `output_dir`, `callbacks`).

Nothing is imported here: the entry points read `run.config` before Hydra composes, without torch.
"""
