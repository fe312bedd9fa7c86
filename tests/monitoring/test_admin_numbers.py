"""Numbers in the admin's lists read as people read them, not as Python prints floats."""

import pytest

from monitoring.models import WatchedFilesystem


@pytest.mark.django_db
def test_filesystem_list_shows_rounded_percentages(admin_client, no_default_filesystems):
    WatchedFilesystem.objects.create(label="models", path="/tmp", yellow_percent=85.0, orange_percent=92.25,
                                     red_percent=97.0, clear_margin=2.0, last_percent=32.574274765122794)
    page = admin_client.get("/admin/monitoring/watchedfilesystem/").content.decode()
    assert "32.574274765122794" not in page and "85.0" not in page
    for shown in ("32.6 %", "85 %", "92.25 %", "97 %", "2 points"):
        assert f">{shown}<" in page, shown
    # Still sortable by the reading (column 9: "used", after the action checkbox).
    WatchedFilesystem.objects.create(label="root", path="/", last_percent=7.0)
    page = admin_client.get("/admin/monitoring/watchedfilesystem/?o=9").content.decode()
    assert page.index(">7 %<") < page.index(">32.6 %<")
    page = admin_client.get("/admin/monitoring/watchedfilesystem/?o=-9").content.decode()
    assert page.index(">32.6 %<") < page.index(">7 %<")
