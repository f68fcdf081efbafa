"""Policy objects: small, immutable, no I/O. Subclass them to change the pool's decisions."""

from ldappool._policies.failover import FailoverPolicy, InOrder, RoundRobin
from ldappool._policies.lifetime import LifetimePolicy
from ldappool._policies.retry import RetryPolicy

__all__ = ["FailoverPolicy", "InOrder", "LifetimePolicy", "RetryPolicy", "RoundRobin"]
