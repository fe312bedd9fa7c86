import subprocess
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference import demo


class Command(BaseCommand):
    help = ("Generate the demo model (a tiny Llama with random weights; its output is noise) for running "
            "the engine pool without a GPU. Nothing is downloaded.")

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, help=f"directory (default {demo.model_dir()})")

    def handle(self, *args, output=None, **options):
        try:
            path = demo.make_model(output)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        except subprocess.CalledProcessError as exc:
            raise CommandError(f"making the demo model failed: {exc.stderr.strip().splitlines()[-1]}") from None
        self.stdout.write(f"demo model written to {path} (random weights: its output is noise)")
