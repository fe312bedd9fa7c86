"""Pages about the gateway served by Django (the API docs); /v1/* itself is inference.gateway.asgi."""

from django.urls import path

from . import views

urlpatterns = [
    path("openapi.json", views.openapi_json, name="api-openapi"),
    path("docs/", views.docs, name="api-docs"),
]
