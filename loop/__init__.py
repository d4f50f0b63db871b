"""The closed loop: label join and live quality, drift and skew detection, the retraining policy
and the canary controller. The statistics here know nothing of Kafka; :mod:`headwater.loop.agents`
wires them to topics."""
