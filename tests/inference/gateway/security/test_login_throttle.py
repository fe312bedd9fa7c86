"""Login throttling (django-axes): wrong passwords for one user name from one address lock that pair out,
even with the right password, on the login page and the admin's; other users and other addresses are not
affected; the lock is listed in the admin and an administrator clears it there.

Through Django's whole request stack (middleware, auth backends, the real login views), one client per address.
"""

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db
PASSWORD = "pw-throttle-12345"
ATTACKER, ELSEWHERE = "203.0.113.7", "198.51.100.20"


@pytest.fixture(autouse=True)
def quick_hashes(settings):
    # Each attempt hashes a password; the throttle does not depend on how slowly (keeps the test fast).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def attempt(address: str, username: str, password: str, path: str = "/login/", agent: str = "browser"):
    client = Client(REMOTE_ADDR=address, HTTP_USER_AGENT=agent)
    return client, client.post(path, {"username": username, "password": password, "next": "/"})


def fail_until_locked(address: str, username: str, path: str = "/login/"):
    """The configured number of wrong passwords, each with another User-Agent (it does not buy more tries);
    returns the last answer."""
    for number in range(settings.AXES_FAILURE_LIMIT):
        client, response = attempt(address, username, "not-the-password", path, agent=f"bot/{number}")
        assert not logged_in(client)
    return response


def test_wrong_passwords_lock_that_user_from_that_address_only(django_user_model):
    django_user_model.objects.create_user("alice", password=PASSWORD)
    django_user_model.objects.create_user("bob", password=PASSWORD)
    client, response = attempt(ATTACKER, "alice", "wrong")
    assert response.status_code == 200 and b"Wrong user name or password" in response.content  # one slip: no lock

    locked = fail_until_locked(ATTACKER, "alice")
    assert locked.status_code == 429
    assert b"Login locked" in locked.content and b"15 minutes" in locked.content

    # The right password is refused too while the lock holds: guessing on cannot succeed.
    client, response = attempt(ATTACKER, "alice", PASSWORD)
    assert response.status_code == 429 and not logged_in(client)
    assert b"even with the right password" in response.content

    # Alice from her own address, and another user from the attacker's, still log in.
    client, response = attempt(ELSEWHERE, "alice", PASSWORD)
    assert response.status_code == 302 and logged_in(client)
    client, response = attempt(ATTACKER, "bob", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_a_right_password_before_the_limit_forgets_the_failures(django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(ATTACKER, "carol", "wrong")
    client, response = attempt(ATTACKER, "carol", PASSWORD)
    assert response.status_code == 302 and logged_in(client)
    # Counting starts again: as many slips as before still do not lock.
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(ATTACKER, "carol", "wrong")
    client, response = attempt(ATTACKER, "carol", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_the_admin_login_is_throttled_too(django_user_model):
    django_user_model.objects.create_user("staffer", password=PASSWORD, is_staff=True)
    assert fail_until_locked(ATTACKER, "staffer", "/admin/login/").status_code == 429
    client, response = attempt(ATTACKER, "staffer", PASSWORD, "/admin/login/")
    assert response.status_code == 429 and not logged_in(client)
    # The lock is one: the regular login page refuses the same pair as well.
    client, response = attempt(ATTACKER, "staffer", PASSWORD)
    assert response.status_code == 429 and not logged_in(client)


def test_the_lock_is_listed_in_the_admin_and_cleared_there(django_user_model):
    django_user_model.objects.create_user("alice", password=PASSWORD)
    admin = django_user_model.objects.create_superuser("root", password=PASSWORD)
    fail_until_locked(ATTACKER, "alice")

    operator = Client(REMOTE_ADDR=ELSEWHERE)
    operator.force_login(admin)
    listing = operator.get("/admin/axes/accessattempt/?q=alice")
    assert listing.status_code == 200
    assert b"alice" in listing.content and ATTACKER.encode() in listing.content
    assert PASSWORD.encode() not in listing.content

    from axes.models import AccessAttempt

    # One row per User-Agent the attempts came with; the lock is their sum. The operator deletes them all.
    locks = list(AccessAttempt.objects.filter(username="alice", ip_address=ATTACKER).values_list("pk", flat=True))
    assert locks
    assert not AccessAttempt.objects.filter(post_data__contains="not-the-password").exists()  # never stored
    response = operator.post("/admin/axes/accessattempt/?q=alice", {
        "action": "delete_selected", "_selected_action": locks, "post": "yes"})
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username="alice").exists()

    client, response = attempt(ATTACKER, "alice", PASSWORD)
    assert response.status_code == 302 and logged_in(client)
