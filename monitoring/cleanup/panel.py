"""What the dashboard's cleanup card shows: each policy's size against its limit, and the last runs."""

from ..models import CleanupPolicy, CleanupRun


def panel(runs: int = 8) -> dict:
    policies = list(CleanupPolicy.objects.all())
    for policy in policies:
        limit = policy.max_bytes
        policy.percent_of_limit = min(100, round(100 * (policy.last_size_bytes or 0) / limit)) if limit else 100
    return {
        "policies": policies,
        "runs": list(CleanupRun.objects.select_related("incident", "user")[:runs]),
    }
