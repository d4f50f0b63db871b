"""Training: point-in-time datasets, torch training, tracking, the model registry, search.

* :mod:`trainers.point_in_time` — labels joined to logged, else as-of offline features.
* :mod:`trainers.training` / :mod:`trainers.job` / :mod:`trainers.distributed` — the loop,
  checkpoints and resume, torchrun DDP.
* :mod:`trainers.model_family` — the MLP and the weights-only bundle serving loads.
* :mod:`trainers.artifacts` — the content-addressed artifact store.
* :mod:`trainers.tracking` / :mod:`trainers.run_queries` — ``runs`` events and reading them back.
* :mod:`trainers.registry_state` / :mod:`trainers.registry` — the event-sourced registry.
* :mod:`trainers.search` / :mod:`trainers.trial_worker` — Bayesian search over Kafka.
* :mod:`trainers.pipeline` / :mod:`trainers.retrain` — end to end, and on retrain requests.
"""
