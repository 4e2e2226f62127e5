"""Random cancellations against the socket emulator leave the client's view of the quota exact.

Real sockets need real time: the posts are cancelled within tens of milliseconds.
"""

from __future__ import annotations

import pytest

from . import scenarios

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Real sockets need real time."""
    return str(request.param)


@pytest.mark.parametrize("seed", [1, 2])
async def test_cancelled_posts_leave_the_budget_equal_to_the_services(seed: int) -> None:
    result = await scenarios.cancellations(posts=200, per_hour=400, seed=seed)
    assert result["cancelled"] > 0
    # As the storm leaves them, they differ by at most the requests cancelled after they were
    # written (the service may or may not have counted each, after the answers the client has).
    gap = result["client_budget_after_storm"] - result["service_remaining_after_storm"]
    assert abs(gap) <= result["unanswered"]
    # ... never stuck: the next post goes out at once, and its answer makes them equal.
    assert result["posted_after_storm"]
    assert result["client_budget_after_next"] == result["service_remaining_after_next"]
