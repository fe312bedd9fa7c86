"""One telemetry cycle through glmadmin's own code, printed (run with DJANGO_SETTINGS_MODULE set)."""
import django

django.setup()
from inference.models import Engine  # noqa: E402
from monitoring.telemetry import service  # noqa: E402

names = {e.pk: e.name for e in Engine.objects.all()}
c = service.sample()
print("gpu_status:", repr(c.gpu_status))
for g in c.gpus:
    print(f"GPU {g.index} {g.name}: {g.memory_used / 2**20:.0f}/{g.memory_total / 2**20:.0f} MiB "
          f"({g.memory_percent:.1f} %) util {g.utilization} % temp {g.temperature} C "
          f"power {g.power_draw}/{g.power_limit} W")
    for p in g.processes:
        owner = f"engine {names.get(p.engine_id)}" if p.engine_id else "foreign"
        print(f"   pid {p.pid} {p.name!r} {(p.used_bytes or 0) / 2**20:.0f} MiB -> {owner}")
for e in c.engines:
    print("engine", names.get(e.engine_id), e)
print("host", c.host)
