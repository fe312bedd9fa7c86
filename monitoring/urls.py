from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("cleanup/run/", views.cleanup_now, name="cleanup-now"),
    path("cleanup/dry-run/", views.cleanup_dry_run, name="cleanup-dry-run"),
    path("metrics", views.metrics, name="metrics"),
    path("diagnose/<int:pk>/", views.engine_diagnose, name="engine-diagnose"),
]
