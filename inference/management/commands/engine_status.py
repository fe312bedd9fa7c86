from django.core.management.base import BaseCommand
from django.utils import timezone

from inference import gpu_occupancy, supervisor
from inference.models import Engine


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Command(BaseCommand):
    help = ("A table of the engines: state, pid, port, GPUs, uptime, restarts, last probe latency; then what "
            "waits for a restart to apply, and engines waiting for their GPUs or too busy to answer probes.")

    def handle(self, *args, **options):
        engines = list(Engine.objects.all())
        if not engines:
            self.stdout.write("no engines are defined: add one in the admin under Engines")
            return
        now = timezone.now()
        rows = [("NAME", "HOST", "STATE", "PID", "PORT", "GPUS", "UPTIME", "RESTARTS", "PROBE")]
        for e in engines:
            rows.append((
                e.name, e.host, e.state + ("" if e.enabled else " (disabled)"), str(e.pid or "-"),
                str(e.running("port")),  # where it listens; an edited port shows below, until the restart
                e.gpu_ids or "-", _duration((now - e.ready_at).total_seconds()) if e.ready_at else "-",
                str(e.restarts), f"{e.last_probe_ms:.0f} ms" if e.last_probe_ms is not None else "-",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        for e in engines:
            if pending := e.pending_restart():
                self.stdout.write(f"{e.name}: restart to apply: {'; '.join(pending)}")
        for e in engines:
            if e.state_reason.startswith(gpu_occupancy.WAITING) or supervisor.BUSY in e.state_reason:
                self.stdout.write(f"{e.name}: {e.state_reason}")
