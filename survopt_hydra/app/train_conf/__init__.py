"""The survival app's own configs: ``train.yaml`` and the Slurm launcher preset.

Only the app's ``config_path`` (``pkg://survopt_hydra.app.train_conf``) sees them; the library
groups reach it, as any app, from the ConfigStore and ``pkg://survopt_hydra.conf``.
"""
