import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from glmadmin.env import env_secret, env_str


class Command(BaseCommand):
    help = ("Create the first admin account if there is no superuser yet. The password comes from "
            "GLMADMIN_ADMIN_PASSWORD (or _FILE); without it one is generated and printed once.")

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = env_str("GLMADMIN_ADMIN_USER", "admin")
        password = env_secret("GLMADMIN_ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(
                f"\n  Admin account created.  user: {username}   password: {password}\n"
                "  This password is shown only once; change it after logging in.\n"
            ))
        else:
            self.stdout.write(f"Admin account {username!r} created with the password from the environment.")
