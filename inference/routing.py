"""Websocket routes of the inference app (the chat)."""

from django.urls import path

from .chat.consumer import ChatConsumer

websocket_urlpatterns = [path("ws/chat/", ChatConsumer.as_asgi())]
