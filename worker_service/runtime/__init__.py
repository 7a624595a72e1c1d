"""The worker process around the actors: bootstrap, worker groups, supervision and the hard limit."""
