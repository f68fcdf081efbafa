"""Policy objects: small, immutable, no I/O. Subclass them to change the pool's decisions."""

from ldappool.policies.failover import FailoverPolicy, InOrder, RoundRobin
from ldappool.policies.lifetime import LifetimePolicy
from ldappool.policies.retry import RetryPolicy

__all__ = ["FailoverPolicy", "InOrder", "LifetimePolicy", "RetryPolicy", "RoundRobin"]
