"""The routing table in Redis under overlapping publishers: an older snapshot written last changes nothing."""

import json

import pytest

from glmadmin.lib import redis as rd
from inference.gateway import redis_state, routing
from inference.models import Engine

pytestmark = pytest.mark.django_db(transaction=True)


def routes() -> dict[str, dict]:
    return {name: json.loads(raw) for name, raw in rd.client().hgetall(redis_state.routes_key()).items()
            if name != redis_state.SYNCED}


def test_an_older_snapshot_written_last_changes_nothing():
    Engine.objects.create(name="a", port=8148, model="/m", served_model_name="m")
    Engine.objects.create(name="gone", port=8149, model="/m", served_model_name="m")
    Engine.objects.filter(name__in=["a", "gone"]).update(state="ready")
    routing.publish()
    slow = routing.snapshot()  # a publisher that read the database, then stalled
    # Meanwhile: "a" starts draining, "gone" is deleted, "new" is added; another publisher writes that.
    Engine.objects.filter(name="a").update(state="draining")
    Engine.objects.filter(name="gone").delete()
    Engine.objects.create(name="new", port=8150, model="/m", served_model_name="m")
    routing.publish()
    assert routing.write(*slow) == 0  # the stalled one finishes last: nothing it holds is newer
    table = routes()
    assert table["a"]["state"] == "draining"
    assert table["gone"].get("deleted") is True and "state" not in table["gone"]
    assert table["new"]["state"] == "stopped"
    # A newer snapshot still writes (and a deleted engine's tombstone is not counted as a change again).
    Engine.objects.filter(name="a").update(state="ready")
    assert routing.write(*routing.snapshot()) == 1
    assert routes()["a"]["state"] == "ready"


def test_publish_tells_the_chat_pages_only_when_routing_changed():
    Engine.objects.create(name="a", port=8148, model="/m", served_model_name="m")  # saved: published
    assert routes()["a"]["state"] == "stopped"
    assert routing.write(*routing.snapshot()) == 0  # same states: no message to every chat page
    Engine.objects.filter(name="a").update(enabled=False)
    assert routing.write(*routing.snapshot()) == 1
