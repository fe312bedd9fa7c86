"""The chat page as the server draws it: login, the model picker with states, nothing from a CDN."""

import re

import pytest
from django.urls import reverse

from inference.models import Engine

pytestmark = pytest.mark.django_db


def test_chat_needs_a_login(client):
    response = client.get(reverse("chat"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_any_signed_in_user_gets_the_page_with_models_and_their_states(client, django_user_model):
    Engine.objects.create(name="a", port=8152, model="/m", served_model_name="glm-flash", state="ready")
    Engine.objects.create(name="b", port=8153, model="/m", served_model_name="glm-flash", state="starting")
    Engine.objects.create(name="c", port=8154, model="/m", served_model_name="loader", state="starting")
    Engine.objects.create(name="d", port=8155, model="/m", served_model_name="off", state="ready", enabled=False)
    client.force_login(django_user_model.objects.create_user("member", password="pw-page-12345"))

    html = client.get(reverse("chat")).content.decode()
    options = re.findall(r'<option value="([^"]*)" data-state="([^"]*)">', html)
    assert options == [("glm-flash", "ready"), ("loader", "loading")]  # disabled engines serve nobody
    assert 'id="chat-model-state" class="model-state model-state-ready"' in html
    assert 'data-socket="/ws/chat/"' in html and f'data-upload-url="{reverse("chat-upload")}"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    for control in ("chat-send", "chat-stop", "chat-clear", "chat-file", "chat-input"):
        assert f'id="{control}"' in html
    assert f'<a href="{reverse("chat")}">Chat</a>' in html  # in the navigation of every page
    sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert "/static/glmadmin/chat.js" in sources and all(s.startswith("/static/") for s in sources)


def test_page_without_engines_says_so(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("member", password="pw-page-12345"))
    html = client.get(reverse("chat")).content.decode()
    assert '<option value="" data-state="none">no model is served</option>' in html
    assert "model-state-none" in html
