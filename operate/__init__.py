"""The top layer that runs the platform: starting, supervising and stopping its processes."""
