import pytest
from django.test import Client

from alerts.models import Incident
from monitoring.disk_check import simulate


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/", "/admin/"])
def test_pages_need_a_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.django_db
def test_login_page_and_login(client, django_user_model):
    django_user_model.objects.create_user("ops", password="pw-12345678")
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "ops", "password": "pw-12345678"})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_dashboard_shows_filesystems_incidents_and_admission(admin_client):
    simulate("red")
    html = admin_client.get("/").content.decode()
    assert "DISK:" in html and "CACHE:" in html and "ENGINE:" in html
    assert "<code>/</code>" in html  # the default watched filesystem
    assert "Simulated disk alert" in html
    assert "New inference requests are refused: disk at 97.0 % on test volume (simulated)." in html
    assert 'class="banner banner-red"' in html
    # The pause is said once in each place, not again by the alert's own text.
    assert html.lower().count("requests are paused") == 1  # the banner's


@pytest.mark.django_db
def test_acknowledge_needs_permission(client, django_user_model):
    simulate("orange")
    incident = Incident.objects.get()
    user = django_user_model.objects.create_user("viewer", password="pw-12345678")
    client.force_login(user)
    assert client.post(f"/incidents/{incident.pk}/acknowledge/").status_code == 403
    incident.refresh_from_db()
    assert incident.acknowledged_at is None


@pytest.mark.django_db
def test_acknowledge_from_dashboard(admin_client, admin_user):
    simulate("orange")
    incident = Incident.objects.get()
    assert admin_client.get(f"/incidents/{incident.pk}/acknowledge/").status_code == 405
    response = admin_client.post(f"/incidents/{incident.pk}/acknowledge/", follow=True)
    assert "Acknowledged: Simulated disk alert" in response.content.decode()
    incident.refresh_from_db()
    assert incident.acknowledged_by == admin_user


@pytest.mark.django_db
def test_acknowledge_is_csrf_protected(admin_user):
    simulate("orange")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(f"/incidents/{Incident.objects.get().pk}/acknowledge/").status_code == 403


@pytest.mark.django_db
def test_thresholds_are_a_click_away_from_the_dashboard(admin_client, client, django_user_model):
    """Issue 17: thresholds were hard to find (they live in the watched filesystem's admin page)."""
    from monitoring.models import WatchedFilesystem

    fs = WatchedFilesystem.objects.get(path="/")
    link = f'href="/admin/monitoring/watchedfilesystem/{fs.pk}/change/"'
    assert link in admin_client.get("/").content.decode()
    assert "Thresholds" in admin_client.get(f"/admin/monitoring/watchedfilesystem/{fs.pk}/change/").content.decode()
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-12345678"))
    assert link not in client.get("/").content.decode()
