"""How often a calling system may call: the token bucket of exchange/rate_limit.py, which
the node's AMQP intake uses too."""

from exchange.rate_limit import TokenBucket

__all__ = ["TokenBucket"]
