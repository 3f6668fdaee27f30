"""The survival training app: the reference Hydra app built on survopt_hydra's groups."""
