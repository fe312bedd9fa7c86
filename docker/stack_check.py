"""What scripts/test-docker checks from outside the containers, as a user's browser would see it.

    stack_check.py fire BASE USER PASSWORD COOKIE_FILE -- COMMAND...
        Log in over HTTP (the session cookie is kept in COOKIE_FILE), open the live websocket, run
        COMMAND (the test alert, fired inside the worker container) while reading it, and wait for
        the orange test banner to arrive over the socket. Prints the incident's id.
    stack_check.py persisted BASE COOKIE_FILE INCIDENT_ID
        After `down` + `up`: the kept session still signs in (its secret key lives in the data volume,
        the session in the database) and the incident is still open (database), both in the page and in
        the websocket's first message.

Exits non-zero with one line saying what was not seen. Runs with the project's .venv (httpx, websockets).
"""

import asyncio
import json
import subprocess
import sys
import time

import httpx
import websockets

# Generous: the machines that run this are small and busy.
WAIT = 90


def fail(message: str):
    sys.exit(f"stack_check: {message}")


def login(base: str, user: str, password: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/login/").raise_for_status()
        answer = client.post("/login/", data={"username": user, "password": password,
                                              "csrfmiddlewaretoken": client.cookies["csrftoken"]})
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            fail(f"login as {user} refused (HTTP {answer.status_code})")
        return f"sessionid={client.cookies['sessionid']}"


def dashboard(base: str, cookie: str) -> str:
    answer = httpx.get(f"{base}/", headers={"Cookie": cookie}, timeout=30)
    if answer.status_code != 200:
        fail(f"the dashboard answered HTTP {answer.status_code} to a signed-in session (signed out?)")
    return answer.text


def orange_test_incident(message: dict) -> dict | None:
    hits = [i for i in message["state"]["incidents"] if i["is_test"] and i["level"] == "orange"]
    if not hits:
        return None
    banner = f'data-incident="{hits[0]["id"]}"'
    return hits[0] if banner in message["html"]["alerts"] and "banner-orange" in message["html"]["alerts"] else None


async def socket(base: str, cookie: str):
    return await websockets.connect(base.replace("http", "ws", 1) + "/ws/live/", open_timeout=WAIT,
                                    additional_headers={"Cookie": cookie, "Origin": base}, max_size=2**22)


async def fire(base: str, cookie: str, command: list[str]) -> dict:
    async with await socket(base, cookie) as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if orange_test_incident(snapshot):
            fail("an orange test alert is open before the test fired one")
        run = asyncio.create_task(asyncio.to_thread(subprocess.run, command, capture_output=True, text=True))
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
            if incident := orange_test_incident(message):
                done = await run
                if done.returncode != 0:
                    fail(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
                return incident
        done = await run
        fail(f"no orange test banner over the websocket within {WAIT} s (the command exited {done.returncode}: "
             f"{(done.stdout + done.stderr).strip()[-500:]})")


async def snapshot(base: str, cookie: str) -> dict:
    async with await socket(base, cookie) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


def main(argv: list[str]):
    if argv[:1] == ["fire"] and "--" in argv:
        base, user, password, cookie_file = argv[1:argv.index("--")]
        cookie = login(base, user, password)
        dashboard(base, cookie)
        with open(cookie_file, "w") as fh:
            fh.write(cookie)
        incident = asyncio.run(fire(base, cookie, argv[argv.index("--") + 1:]))
        print(incident["id"])
    elif argv[:1] == ["persisted"] and len(argv) == 4:
        base, cookie_file, incident_id = argv[1:]
        with open(cookie_file) as fh:
            cookie = fh.read().strip()
        if f'data-incident="{incident_id}"' not in dashboard(base, cookie):
            fail(f"the dashboard has no banner for incident {incident_id} after down + up")
        incident = orange_test_incident(asyncio.run(snapshot(base, cookie)))
        if incident is None or str(incident["id"]) != incident_id:
            fail(f"the websocket's first message has no orange incident {incident_id} after down + up")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
