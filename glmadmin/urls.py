from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

# Incidents and notifications moved from monitoring to the alerts app: links people kept (bookmarks,
# chat history) to their admin pages still lead there.
MOVED_TO_ALERTS = "incident|incidentevent|notificationchannel|notification|deliveryattempt"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    re_path(rf"^admin/monitoring/(?P<rest>(?:{MOVED_TO_ALERTS})/.*)$",
            RedirectView.as_view(url="/admin/alerts/%(rest)s", permanent=True, query_string=True)),
    path("admin/", admin.site.urls),
    path("engines/", include("inference.urls")),
    path("chat/", include("inference.chat.urls")),
    path("api/", include("inference.gateway.urls")),
    path("", include("alerts.urls")),
    path("", include("monitoring.urls")),
]
