import pytest
from django.core.management import CommandError, call_command

from alerts import admission
from alerts.models import Incident
from monitoring.models import WatchedFilesystem


@pytest.mark.django_db
def test_test_alert_goes_through_the_alert_path(capsys):
    call_command("test_alert", "--level", "red")
    incident = Incident.objects.open().get()
    assert (incident.level, incident.is_test) == ("red", True)
    assert admission.current().paused
    assert "opened (red:" in capsys.readouterr().out

    call_command("test_alert", "--level", "yellow")
    assert Incident.objects.open().get().level == "yellow"
    assert not admission.current().paused

    call_command("test_alert", "--clear")
    assert not Incident.objects.open().exists()
    assert "resolved (cleared)" in capsys.readouterr().out


@pytest.mark.django_db
def test_test_alert_needs_one_of_level_or_clear():
    with pytest.raises(CommandError, match="exactly one of --level"):
        call_command("test_alert")
    with pytest.raises(CommandError, match="exactly one of --level"):
        call_command("test_alert", "--level", "red", "--clear")


@pytest.mark.django_db
def test_check_disk_prints_each_filesystem(no_default_filesystems, tmp_path, capsys):
    WatchedFilesystem.objects.create(path=str(tmp_path), label="scratch")
    call_command("check_disk")
    out = capsys.readouterr().out
    assert "scratch" in out and str(tmp_path) in out and "%" in out
    fs = WatchedFilesystem.objects.get()
    assert fs.last_percent is not None and fs.samples.count() == 1


@pytest.mark.django_db
def test_check_disk_fails_on_unreadable_path(no_default_filesystems, tmp_path):
    WatchedFilesystem.objects.create(path=str(tmp_path / "gone"), label="gone")
    with pytest.raises(CommandError, match="cannot read .*gone"):
        call_command("check_disk")
    assert "cannot read" in WatchedFilesystem.objects.get().last_error


@pytest.mark.django_db
def test_check_disk_without_filesystems_says_what_to_do(no_default_filesystems, settings, tmp_path):
    settings.GLMADMIN_HOST_NAME = "local"
    WatchedFilesystem.objects.create(path=str(tmp_path), label="theirs", host="gpu2")  # not this host's to check
    with pytest.raises(CommandError, match="no filesystem of host local is watched"):
        call_command("check_disk")


@pytest.mark.django_db
def test_ensure_admin_creates_one_superuser_once(django_user_model, monkeypatch, capsys):
    monkeypatch.delenv("GLMADMIN_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("password:")[1].split()[0]
    admin = django_user_model.objects.get()
    assert admin.is_superuser and admin.check_password(password)
    call_command("ensure_admin")
    assert capsys.readouterr().out == "" and django_user_model.objects.count() == 1
