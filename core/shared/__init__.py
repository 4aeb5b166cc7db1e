"""What replicas share through Redis besides rate limits and locks (core.limits_redis): the
platforms' write budgets, the concurrency cap with its queue, and the running answers.

Each part falls back to its per-process twin while Redis is unreachable, on the same `RedisLink`
as the rate limits, so Redis going away never fails a request. `open_fleet` builds them.
"""
