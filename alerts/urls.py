from django.urls import path

from . import views

urlpatterns = [
    path("incidents/<int:pk>/acknowledge/", views.acknowledge, name="acknowledge-incident"),
    path("incidents/<int:pk>/resolve/", views.resolve, name="resolve-incident"),
    path("incidents/<int:pk>/silence/", views.silence, name="silence-incident"),
]
