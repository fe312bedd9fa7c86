"""The chat page: a websocket consumer that streams through the gateway's own admission and routing."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("upload/", views.upload, name="chat-upload"),
]
