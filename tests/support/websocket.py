"""What a browser brings to a websocket: the page's origin and a signed-in session."""

from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client

ORIGIN = (b"origin", b"http://localhost")


@database_sync_to_async
def session_cookie(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-12345678")
    client = Client()
    client.force_login(user)
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())
