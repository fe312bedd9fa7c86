"""An existing demo engine row is upgraded to run float32 (inference/migrations/0003)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from inference import demo

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE, AFTER = [("inference", "0002_api_keys")], [("inference", "0003_demo_engine_float32")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def back_to_the_latest():
    yield
    # The tests after this one need every later migration's schema (0005 adds a column).
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_demo_engine_gets_the_float32_flag_and_nothing_else_changes():
    old = migrate(BEFORE)
    Engine = old.get_model("inference", "Engine")
    Engine.objects.create(name="demo", port=8101, model="/data/models/glmadmin-demo", served_model_name="d",
                          extra_args=["--seed", "1"])
    Engine.objects.create(name="demo-pinned", port=8102, model="/data/models/glmadmin-demo",
                          served_model_name="p", extra_args=["--dtype=bfloat16"])
    Engine.objects.create(name="glm", port=8103, model="/models/glm", served_model_name="glm", extra_args=[])
    new = migrate(AFTER)
    args = dict(new.get_model("inference", "Engine").objects.values_list("name", "extra_args"))
    assert args == {"demo": ["--seed", "1", *demo.ENGINE_ARGS], "demo-pinned": ["--dtype=bfloat16"], "glm": []}
