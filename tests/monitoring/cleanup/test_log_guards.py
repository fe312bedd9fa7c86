"""Log patterns are held to the same rules as cleanup roots, and never reach glmadmin's own files."""

import gzip
import os

import pytest
from django.db import connection

from monitoring.cleanup.logs import maintain
from monitoring.models import CleanupRun, LogPolicy

LOG_ADD_URL = "/admin/monitoring/logpolicy/add/"
pytestmark = pytest.mark.django_db


def add(admin_client, patterns: str):
    data = {"name": "app", "patterns": patterns, "enabled": "on", "max_file_size": "1K", "keep": "3",
            "compress": "on"}
    response = admin_client.post(LOG_ADD_URL, data)
    if response.status_code != 200:
        return response.status_code, ""
    return 200, " ".join(response.context["adminform"].form.errors.get("patterns", []))


def test_a_pattern_matching_the_database_is_refused(admin_client, settings):
    if connection.vendor != "sqlite":
        pytest.skip("the database is not a file here")
    database = os.path.realpath(connection.settings_dict["NAME"])
    pattern = os.path.join(os.path.dirname(database), "*")
    status, error = add(admin_client, pattern)
    assert status == 200 and f"would match glmadmin's own database ({database})" in error
    assert not LogPolicy.objects.filter(name="app").exists()


def test_a_pattern_matching_the_secret_key_is_refused_and_never_rotated(admin_client, settings):
    secret = settings.DATA_DIR / "secret_key"
    if not secret.exists():  # the key came from GLMADMIN_SECRET_KEY: stand in for the file a default set-up has
        secret.write_text("key")
    key = secret.read_text()
    pattern = str(settings.DATA_DIR / "secret_*")
    status, error = add(admin_client, pattern)
    assert status == 200 and f"would match glmadmin's own secret key ({secret})" in error
    # A policy that reached the database some other way, over a limit the key is over: the run judges it again.
    policy = LogPolicy.objects.create(name="sneaky", patterns=pattern, max_file_size="10", keep=3)
    run = maintain(policy, trigger=CleanupRun.Trigger.SCHEDULE)
    assert run.status == CleanupRun.Status.FAILED and run.message.startswith("refused: ")
    assert secret.read_text() == key and not list(settings.DATA_DIR.glob("secret_key.*"))


@pytest.mark.parametrize("pattern", ["/etc/*", "/*/app.log", "//etc/*.conf"])
def test_patterns_outside_the_allowed_directories_are_refused(admin_client, pattern):
    status, error = add(admin_client, pattern)
    assert status == 200 and "is outside the directories cleanup may act in" in error


def test_a_pattern_through_a_symlinked_directory_is_saved_canonical_or_refused(admin_client, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    status, error = add(admin_client, f"{tmp_path}/link/*.log")
    assert status == 200 and f"enter the directory it points to ({tmp_path}/real)" in error
    assert add(admin_client, f"/{tmp_path}//real/./*.log") == (302, "")
    assert LogPolicy.objects.get(name="app").patterns == f"{tmp_path}/real/*.log"


def test_a_match_through_a_symlinked_directory_is_left_alone(tmp_path):
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    (logs / "app").mkdir(parents=True)
    outside.mkdir()
    (logs / "app" / "app.log").write_text("x" * 4096)
    (outside / "app.log").write_text("precious\n" * 1000)
    (logs / "evil").symlink_to(outside)
    policy = LogPolicy.objects.create(name="app", patterns=f"{logs}/*/app.log", max_file_size="1K", keep=3)
    run = maintain(policy, trigger=CleanupRun.Trigger.SCHEDULE)
    assert sorted(os.listdir(outside)) == ["app.log"]
    assert (outside / "app.log").read_text() == "precious\n" * 1000
    assert sorted(os.listdir(logs / "app")) == ["app.log.1.gz"]
    assert gzip.decompress((logs / "app" / "app.log.1.gz").read_bytes()) == b"x" * 4096
    assert run.skipped == {"symlink": 1}


def test_only_our_own_numbering_counts_as_a_rotation(tmp_path):
    for name in ("data.log", "data.log.2", "data.log.7", "data.log.7.gz", "data.log.20250101", "data.log.007",
                 "data.log.1000"):
        (tmp_path / name).write_text("x")
    policy = LogPolicy.objects.create(name="app", patterns=f"{tmp_path}/*.log", max_file_size="1M", keep=5)
    run = maintain(policy, trigger=CleanupRun.Trigger.SCHEDULE)
    # .7 and .7.gz are ours and beyond keep; a dated backup, a zero-padded or a huge number are someone else's.
    assert sorted(os.listdir(tmp_path)) == ["data.log", "data.log.007", "data.log.1000", "data.log.2",
                                            "data.log.20250101"]
    assert sorted(name for name, _ in run.removed) == [f"{tmp_path}/data.log.7", f"{tmp_path}/data.log.7.gz"]
