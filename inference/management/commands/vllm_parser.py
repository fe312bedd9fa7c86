import subprocess

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference import vllm_parser


class Command(BaseCommand):
    help = ("Compare glmadmin's table of vLLM's server arguments (inference/vllm_parser.json, used to check "
            "engines' extra arguments) with the engine runtime's vLLM; --write replaces it.")

    def add_arguments(self, parser):
        parser.add_argument("--write", action="store_true", help="store the runtime's table")

    def handle(self, *args, write=False, **options):
        try:
            new = vllm_parser.from_runtime(settings.ENGINE_PYTHON)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CommandError(f"cannot read vLLM's parser with {settings.ENGINE_PYTHON}: {exc}") from None
        if write:
            vllm_parser.write(new)
            self.stdout.write(f"wrote {vllm_parser.TABLE} (vLLM {new['vllm']}, {len(new['arguments'])} arguments)")
        elif new == vllm_parser.table():
            self.stdout.write(f"up to date (vLLM {new['vllm']})")
        else:
            raise CommandError(f"the table is for vLLM {vllm_parser.version()}, the runtime has {new['vllm']} "
                               "with other arguments: run manage.py vllm_parser --write")
