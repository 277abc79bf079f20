"""Federation: share learned failure patterns between projects through a hub.

The client is light (httpx only); the hub (`federation.hub`, FastAPI and
SQLAlchemy) is imported only when served.
"""

from taskorch_nb.federation.client import (
    FederationClient,
    HubRateLimitedError,
    HubTimeoutError,
    HubUnavailableError,
    PatternSource,
    TrustPolicy,
)
from taskorch_nb.federation.schema import PatternRecord, ServedPattern

__all__ = [
    "FederationClient",
    "HubRateLimitedError",
    "HubTimeoutError",
    "HubUnavailableError",
    "PatternRecord",
    "PatternSource",
    "ServedPattern",
    "TrustPolicy",
]
