from django.urls import path

from . import views

urlpatterns = [
    path("<int:pk>/", views.engine_detail, name="engine-detail"),
    path("<int:pk>/log/", views.engine_log, name="engine-log"),
    path("<int:pk>/<slug:action>/", views.engine_action, name="engine-action"),
]
