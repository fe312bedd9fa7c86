from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("engines/", include("inference.urls")),
    path("chat/", include("inference.chat.urls")),
    path("api/", include("inference.gateway.urls")),
    path("", include("alerts.urls")),
    path("", include("monitoring.urls")),
]
