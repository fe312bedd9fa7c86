from django.urls import path

from . import views

urlpatterns = [
    path("<int:pk>/<slug:action>/", views.engine_action, name="engine-action"),
]
