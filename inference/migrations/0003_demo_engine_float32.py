"""The demo engine defined by an earlier scripts/run gets the float32 flag new ones get (inference/demo.py):
without it, vLLM's CPU build dies of SIGILL on a CPU without AVX512-BF16."""

from django.db import migrations

FLAG = ["--dtype", "float32"]


def add_flag(apps, schema_editor):
    Engine = apps.get_model("inference", "Engine")
    for engine in Engine.objects.filter(model__endswith="glmadmin-demo"):
        if not any(arg.split("=", 1)[0] == "--dtype" for arg in engine.extra_args):
            engine.extra_args = [*engine.extra_args, *FLAG]
            engine.save(update_fields=["extra_args"])


class Migration(migrations.Migration):
    dependencies = [("inference", "0002_api_keys")]
    operations = [migrations.RunPython(add_flag, migrations.RunPython.noop)]
