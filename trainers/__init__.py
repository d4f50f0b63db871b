"""Training: point-in-time datasets, torch training, tracking, the model registry, search.

* :mod:`headwater.trainers.point_in_time` — labels joined to logged, else as-of offline features.
* :mod:`headwater.trainers.training` / :mod:`headwater.trainers.job` /
:mod:`headwater.trainers.distributed` — the loop,
  checkpoints and resume, torchrun DDP.
* :mod:`headwater.trainers.model_family` — the MLP and the weights-only bundle serving loads.
* :mod:`headwater.trainers.artifacts` — the content-addressed artifact store.
* :mod:`headwater.trainers.tracking` / :mod:`headwater.trainers.run_queries` — ``runs`` events and
reading them back.
* :mod:`headwater.trainers.registry_state` / :mod:`headwater.trainers.registry` — the event-sourced
registry.
* :mod:`headwater.trainers.search` / :mod:`headwater.trainers.trial_worker` — Bayesian search over
Kafka.
* :mod:`headwater.trainers.pipeline` / :mod:`headwater.trainers.retrain` — end to end, and on
retrain requests.
"""
