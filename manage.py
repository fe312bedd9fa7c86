#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glmadmin.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A setting glmadmin refuses (e.g. GLMADMIN_ENGINE_USER without root): one line that names it, at
        # start-up and at `manage.py check`, rather than a traceback through Django's loading.
        sys.exit(f"ImproperlyConfigured: {exc}")


if __name__ == "__main__":
    main()
