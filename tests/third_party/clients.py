#!/usr/bin/env python3
"""Third-party clients against `lark-vc-bridge simulate` (issue 6, item 2).

Starts the simulators through the real binary, reads the printed base URLs, credentials
and seeded trainers from its stdout, and drives them with UNMODIFIED third-party
libraries, the way an integrator would drive the real platforms:

- simple-salesforce: REST query / create / get / update / describe / query_all paging /
  delete against the Salesforce simulator;
- aiosfstream-ng (aiocometd-ng underneath): CometD long-polling subscription to the
  booking Change Data Capture channel, with replay -2, -1 and a stored replay id;
- lark-oapi (the official Lark SDK): tenant-token bot message, app-token v1 OIDC code
  exchange and user_info, and VC reservations apply / get / update / delete with a user
  access token obtained through the simulator's authorize page and the v2 token endpoint;
  then Calendar v4 with the user token (primary calendar, event create with an
  idempotency_key, patch, get, attendees, delete), contact batch_get_id, a reservation
  for an owner with the tenant token, and a bot message to a group chat the app created.

Prints one line per check (`ok  …` / `FAIL …`), then `N passed, M failed`; exits
non-zero on any failure. See README.md next to this file for why each workaround exists.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from requests.adapters import HTTPAdapter

BOOKING = "Training_Booking__c"
CDC_CHANNEL = "/data/Training_Booking__ChangeEvent"
STARTUP_DEADLINE_S = 60.0
EVENT_DEADLINE_S = 15.0
OPEN_DEADLINE_S = 20.0


# --------------------------------------------------------------------------------------
# Reporting


class Report:
    """Counts checks and prints one line for each."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, condition: bool, detail: Any = "") -> bool:
        if condition:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            suffix = f": {detail}" if detail != "" else ""
            print(f"FAIL {name}{suffix}", flush=True)
        return condition

    def section(self, name: str, body: Callable[[], None]) -> None:
        """Runs one library's checks; an exception fails the section, not the run."""
        print(f"-- {name}", flush=True)
        try:
            body()
        except Exception as exc:  # noqa: BLE001 - any error is a failed check here
            trace = traceback.format_exc(limit=6).rstrip().replace("\n", "\n     ")
            self.check(f"{name}: ran to the end", False, f"{exc!r}\n     {trace}")


# --------------------------------------------------------------------------------------
# The simulate process


@dataclass
class Trainer:
    id: str
    name: str
    email: str
    has_lark_account: bool


@dataclass
class Simulate:
    proc: subprocess.Popen
    sf_url: str = ""
    lark_url: str = ""
    sf_client_id: str = ""
    sf_client_secret: str = ""
    lark_app_id: str = ""
    lark_app_secret: str = ""
    trainers: list[Trainer] = field(default_factory=list)
    output: list[str] = field(default_factory=list)


TRAINER_LINE = re.compile(
    r"^\s+(?P<id>[a-zA-Z0-9]{18})\s+(?P<name>.+?)\s{2,}(?P<email>\S+@\S+)\s+"
    r"(?P<kind>Lark user|no Lark account)\s*$"
)
SNIPPET_LINE = re.compile(r'^(?P<key>[a-z_]+)\s*=\s*"(?P<value>[^"]*)"\s*$')


def start_simulate(binary: str) -> Simulate:
    """Starts `BINARY simulate` and parses what it prints until it says it is running."""
    proc = subprocess.Popen(
        [binary, "simulate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    sim = Simulate(proc=proc)
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump() -> None:
        # Keeps draining stdout for the whole run so the child never blocks on a full pipe.
        assert proc.stdout is not None
        for line in proc.stdout:
            sim.output.append(line.rstrip("\n"))
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()

    section = ""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError("simulate did not print 'Running until ctrl-c.' in time")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            raise RuntimeError(
                f"simulate exited early (code {proc.wait()}):\n" + "\n".join(sim.output)
            )
        if line.startswith("Salesforce simulator:"):
            sim.sf_url = line.split(":", 1)[1].strip()
        elif line.startswith("Lark simulator:"):
            sim.lark_url = line.split(":", 1)[1].strip()
        elif line.strip() in ("[salesforce]", "[lark]", "[alerts]"):
            section = line.strip()
        elif m := SNIPPET_LINE.match(line):
            key, value = m["key"], m["value"]
            if section == "[salesforce]" and key == "client_id":
                sim.sf_client_id = value
            elif section == "[salesforce]" and key == "client_secret":
                sim.sf_client_secret = value
            elif section == "[lark]" and key == "app_id":
                sim.lark_app_id = value
            elif section == "[lark]" and key == "app_secret":
                sim.lark_app_secret = value
        elif m := TRAINER_LINE.match(line):
            sim.trainers.append(
                Trainer(m["id"], m["name"].strip(), m["email"], m["kind"] == "Lark user")
            )
        elif line.startswith("Running until ctrl-c"):
            return sim


def stop_simulate(sim: Simulate) -> int | None:
    """Ctrl-C, as a person would; killed if it does not stop within 10 s."""
    if sim.proc.poll() is None:
        sim.proc.send_signal(signal.SIGINT)
        try:
            return sim.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.proc.kill()
            sim.proc.wait()
            return None
    return sim.proc.returncode


# --------------------------------------------------------------------------------------
# Salesforce: simple-salesforce


class LoopbackHttpAdapter(HTTPAdapter):
    """Sends simple-salesforce's `https://127.0.0.1:PORT/…` requests over plain HTTP.

    simple-salesforce 1.12.10 always builds `https://{instance}` URLs (api.py: base_url,
    query_more), while the simulator serves plain HTTP on loopback. This adapter, mounted
    on a `requests.Session` passed through simple-salesforce's documented `session`
    argument, only changes the scheme; the library itself runs unmodified.
    """

    def send(self, request, *args, **kwargs):  # type: ignore[override]
        if request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        return super().send(request, *args, **kwargs)


def salesforce_token(sim: Simulate) -> dict:
    """Client-credentials login, exactly as a script against a real org would do it."""
    resp = requests.post(
        f"{sim.sf_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.sf_client_id,
            "client_secret": sim.sf_client_secret,
        },
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()


def simple_salesforce_client(sim: Simulate, token: dict):
    from simple_salesforce import Salesforce

    instance = urlparse(token["instance_url"])
    session = requests.Session()
    session.mount(f"https://{instance.netloc}/", LoopbackHttpAdapter())
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        version="62.0",
        session=session,
    )


def booking_fields(trainer: Trainer, merchant: str, start_hours: int = 48) -> dict:
    start = time.gmtime(time.time() + start_hours * 3600)
    end = time.gmtime(time.time() + (start_hours + 2) * 3600)
    fmt = "%Y-%m-%dT%H:%M:%S.000+0000"
    return {
        "Name": f"Onboarding {merchant}",
        "Trainer__c": trainer.id,
        "Training_Start__c": time.strftime(fmt, start),
        "Training_End__c": time.strftime(fmt, end),
        "Service_Type__c": "Remote",
        "Status__c": "Scheduled",
        "Merchant_Name__c": merchant,
    }


def check_simple_salesforce(r: Report, sim: Simulate, ctx: dict) -> None:
    from simple_salesforce.exceptions import SalesforceResourceNotFound

    token = salesforce_token(sim)
    r.check(
        "sf token: client_credentials answers access_token, instance_url, id",
        all(k in token for k in ("access_token", "instance_url", "id", "token_type")),
        token.keys(),
    )
    integration_user = token["id"].rstrip("/").rsplit("/", 1)[-1]
    ctx["integration_user"] = integration_user
    sf = simple_salesforce_client(sim, token)
    ctx["sf"] = sf

    trainers = sf.query("SELECT Id, Name, Email__c FROM Onboarding_Trainer__c")
    by_id = {row["Id"]: row for row in trainers["records"]}
    r.check(
        "simple-salesforce query: the seeded trainers, with attributes",
        trainers["done"] is True
        and trainers["totalSize"] == len(sim.trainers)
        and all(t.id in by_id and by_id[t.id]["Email__c"] == t.email for t in sim.trainers)
        and all(row["attributes"]["type"] == "Onboarding_Trainer__c" for row in by_id.values()),
        trainers,
    )

    trainer = next(t for t in sim.trainers if t.has_lark_account)
    created = sf.Training_Booking__c.create(booking_fields(trainer, "Third Party Cafe"))
    booking_id = created.get("id", "")
    r.check(
        "simple-salesforce create: 201 {id, success: true, errors: []}",
        created.get("success") is True and created.get("errors") == [] and len(booking_id) == 18,
        created,
    )

    got = sf.Training_Booking__c.get(booking_id)
    r.check(
        "simple-salesforce get: the record with its fields and attributes",
        got["Id"] == booking_id
        and got["Trainer__c"] == trainer.id
        and got["Merchant_Name__c"] == "Third Party Cafe"
        and got["Service_Type__c"] == "Remote"
        and got["attributes"]["type"] == BOOKING
        and got["CreatedById"] == integration_user,
        got,
    )

    status = sf.Training_Booking__c.update(
        booking_id, {"Merchant_Name__c": "Third Party Bistro", "Status__c": "Confirmed"}
    )
    again = sf.Training_Booking__c.get(booking_id)
    r.check(
        "simple-salesforce update: 204, and get sees the new values",
        status == 204
        and again["Merchant_Name__c"] == "Third Party Bistro"
        and again["Status__c"] == "Confirmed",
        (status, again),
    )

    described = sf.Training_Booking__c.describe()
    names = {f["name"] for f in described["fields"]}
    lark_fields = {
        "Lark_Reservation_Id__c",
        "Lark_Meeting_Status__c",
        "Lark_Meeting_Error__c",
        "Remote_Training_Meeting_Link__c",
    }
    status_field = next(
        (f for f in described["fields"] if f["name"] == "Lark_Meeting_Status__c"), {}
    )
    r.check(
        "simple-salesforce describe: the Lark_* fields are listed",
        described["name"] == BOOKING
        and lark_fields <= names
        and status_field.get("type") == "picklist"
        and "Created" in [v["value"] for v in status_field.get("picklistValues", [])],
        sorted(names),
    )
    global_describe = sf.describe()
    r.check(
        "simple-salesforce global describe: lists both custom objects",
        {BOOKING, "Onboarding_Trainer__c"} <= {o["name"] for o in global_describe["sobjects"]},
        global_describe,
    )

    status = sf.Training_Booking__c.delete(booking_id)
    r.check("simple-salesforce delete: 204", status == 204, status)
    try:
        sf.Training_Booking__c.get(booking_id)
        gone = False
    except SalesforceResourceNotFound:
        gone = True
    r.check("simple-salesforce get after delete: NOT_FOUND (404)", gone)
    soql = f"SELECT Id, IsDeleted FROM {BOOKING} WHERE Id = '{booking_id}'"
    live = sf.query_all(soql)
    everything = sf.query_all(soql, include_deleted=True)
    r.check(
        "simple-salesforce query_all: the deleted booking is gone; include_deleted sees it",
        live["totalSize"] == 0
        and everything["totalSize"] == 1
        and everything["records"][0]["IsDeleted"] is True,
        (live, everything),
    )
    ctx["deleted_booking"] = booking_id


def check_query_paging(r: Report, sim: Simulate, ctx: dict) -> None:
    sf = ctx["sf"]
    trainer = sim.trainers[-1]
    marker = f"Paging {uuid.uuid4().hex[:8]}"
    count = 205
    ids = set()
    for i in range(count):
        ids.add(sf.Training_Booking__c.create(booking_fields(trainer, f"{marker} {i:03d}"))["id"])
    soql = f"SELECT Id, Merchant_Name__c FROM {BOOKING} WHERE Merchant_Name__c LIKE '{marker}%'"
    # Sforce-Query-Options: batchSize=200 is the REST API's own paging knob (min 200).
    options = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(soql, headers=options)
    r.check(
        "simple-salesforce query with batchSize=200: first page of 200, nextRecordsUrl",
        first["totalSize"] == count
        and first["done"] is False
        and len(first["records"]) == 200
        and first.get("nextRecordsUrl", "").startswith("/services/data/v62.0/query/"),
        {k: v for k, v in first.items() if k != "records"},
    )
    everything = sf.query_all(soql, headers=options)
    got = {row["Id"] for row in everything["records"]}
    r.check(
        f"simple-salesforce query_all: follows nextRecordsUrl to all {count} records",
        everything["totalSize"] == count and got == ids,
        (everything["totalSize"], len(got ^ ids)),
    )
    limited = sf.query_all(soql + " LIMIT 7")
    r.check(
        "simple-salesforce query_all with LIMIT 7: 7 records, one page",
        limited["totalSize"] == 7 and len(limited["records"]) == 7,
        limited["totalSize"],
    )


# --------------------------------------------------------------------------------------
# Salesforce streaming: aiosfstream-ng / aiocometd-ng


def check_streaming(r: Report, sim: Simulate, ctx: dict) -> None:
    asyncio.run(streaming_checks(r, sim, ctx))


def make_authenticator(sim: Simulate):
    """aiosfstream's documented extension point: an AuthenticatorBase whose
    `_authenticate` performs the login. The shipped authenticators post to the hard-coded
    login.salesforce.com; this one posts the same client-credentials form to the
    simulator's token URL and hands back Salesforce's token response untouched, except
    that the instance URL's host becomes `localhost` (see README: aiohttp's default cookie
    jar drops cookies set by a bare IP address, and Bayeux needs its BAYEUX_BROWSER cookie).
    """
    import aiohttp
    from aiosfstream_ng.auth import AuthenticatorBase

    class SimulatorClientCredentials(AuthenticatorBase):
        async def _authenticate(self):
            async with aiohttp.ClientSession() as session:
                resp = await session.post(
                    f"{sim.sf_url}/services/oauth2/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": sim.sf_client_id,
                        "client_secret": sim.sf_client_secret,
                    },
                )
                body = await resp.json()
            if resp.status == 200:
                body["instance_url"] = body["instance_url"].replace(
                    "://127.0.0.1:", "://localhost:"
                )
            return resp.status, body

    return SimulatorClientCredentials()


@contextlib.asynccontextmanager
async def streaming_client(sim: Simulate, replay: Any):
    """An aiosfstream Client, opened (handshake + first `/meta/connect`) within a deadline,
    so a simulator that holds the first connect fails the check instead of hanging it."""
    from aiosfstream_ng import Client

    client = Client(make_authenticator(sim), replay=replay)
    try:
        try:
            await asyncio.wait_for(client.open(), OPEN_DEADLINE_S)
        except asyncio.TimeoutError as exc:
            raise RuntimeError(
                f"aiosfstream open() (handshake + first /meta/connect) took over {OPEN_DEADLINE_S} s"
            ) from exc
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), OPEN_DEADLINE_S)


async def subscribe(client, channel: str) -> None:
    await asyncio.wait_for(client.subscribe(channel), OPEN_DEADLINE_S)


async def next_event(client, record_id: str | None = None, change_type: str | None = None) -> dict:
    """The next CDC event (for `record_id`/`change_type` when given), within the deadline."""

    async def wait() -> dict:
        while True:
            message = await client.receive()
            header = message["data"]["payload"]["ChangeEventHeader"]
            if record_id is not None and record_id not in header["recordIds"]:
                continue
            if change_type is not None and header["changeType"] != change_type:
                continue
            return message

    return await asyncio.wait_for(wait(), EVENT_DEADLINE_S)


def quiet_cancelled_connect(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """aiocometd-ng cancels its held `/meta/connect` when a client closes, and the task's
    done-callback then logs the CancelledError through the loop's exception handler. That
    is the library tidying up, not a failure: keep it out of the output."""
    if isinstance(context.get("exception"), asyncio.CancelledError) and "_connect_done" in str(
        context.get("message", "")
    ):
        return
    loop.default_exception_handler(context)


async def streaming_checks(r: Report, sim: Simulate, ctx: dict) -> None:
    from aiosfstream_ng import ReplayMarker, ReplayOption

    asyncio.get_running_loop().set_exception_handler(quiet_cancelled_connect)

    sf = ctx["sf"]
    user = ctx["integration_user"]
    trainer = next(t for t in sim.trainers if t.has_lark_account)

    # Replay -2: everything retained, including the booking the REST checks created and
    # deleted before this client existed.
    old_id = ctx.get("deleted_booking")
    async with streaming_client(sim, ReplayOption.ALL_EVENTS) as client:
        await subscribe(client, CDC_CHANNEL)
        r.check(
            "aiosfstream handshake + subscribe (replay -2): long-polling, subscribed",
            CDC_CHANNEL in client.subscriptions
            and str(client.connection_type.value) == "long-polling",
            (client.subscriptions, client.connection_type),
        )
        if old_id:
            seen = []
            for kind in ("CREATE", "UPDATE", "DELETE"):
                msg = await next_event(client, old_id, kind)
                seen.append(msg["data"]["payload"]["ChangeEventHeader"]["changeType"])
            r.check(
                "aiosfstream replay -2: replays CREATE, UPDATE, DELETE of an earlier booking",
                seen == ["CREATE", "UPDATE", "DELETE"],
                seen,
            )

    # Replay -1: only new events. Create, update and delete a booking through REST.
    storage: dict[str, ReplayMarker] = {}
    async with streaming_client(sim, ReplayOption.NEW_EVENTS) as client:
        await subscribe(client, CDC_CHANNEL)
        created = await asyncio.to_thread(
            sf.Training_Booking__c.create, booking_fields(trainer, "Streaming Deli")
        )
        new_id = created["id"]
        msg = await next_event(client)
        header = msg["data"]["payload"]["ChangeEventHeader"]
        payload = msg["data"]["payload"]
        r.check(
            "aiosfstream replay -1: first event is the new booking's CREATE, not history",
            header["changeType"] == "CREATE"
            and header["recordIds"] == [new_id]
            and header["entityName"] == BOOKING
            and header["commitUser"] == user
            and payload.get("Merchant_Name__c") == "Streaming Deli"
            and payload.get("Trainer__c") == trainer.id
            and isinstance(msg["data"]["event"]["replayId"], int)
            and msg["channel"] == CDC_CHANNEL,
            msg,
        )
        create_replay = msg["data"]["event"]["replayId"]
        storage[CDC_CHANNEL] = ReplayMarker(
            date=str(header["commitTimestamp"]), replay_id=create_replay
        )

        await asyncio.to_thread(
            sf.Training_Booking__c.update,
            new_id,
            {"Status__c": "Confirmed", "Merchant_Name__c": "Streaming Diner"},
        )
        msg = await next_event(client, new_id)
        header = msg["data"]["payload"]["ChangeEventHeader"]
        payload = msg["data"]["payload"]
        r.check(
            "aiosfstream UPDATE event: changedFields names the changed fields, body only those",
            header["changeType"] == "UPDATE"
            and {"Status__c", "Merchant_Name__c"} <= set(header["changedFields"])
            and payload.get("Status__c") == "Confirmed"
            and payload.get("Merchant_Name__c") == "Streaming Diner"
            and "Trainer__c" not in payload
            and msg["data"]["event"]["replayId"] > create_replay,
            msg,
        )

        await asyncio.to_thread(sf.Training_Booking__c.delete, new_id)
        msg = await next_event(client, new_id)
        header = msg["data"]["payload"]["ChangeEventHeader"]
        r.check(
            "aiosfstream DELETE event: changeType DELETE, recordIds [id]",
            header["changeType"] == "DELETE" and header["recordIds"] == [new_id],
            msg,
        )

    # A stored replay id: resume after the CREATE, get the UPDATE and DELETE again.
    async with streaming_client(sim, storage) as client:
        await subscribe(client, CDC_CHANNEL)
        first = await next_event(client)
        second = await next_event(client)
        kinds = [m["data"]["payload"]["ChangeEventHeader"]["changeType"] for m in (first, second)]
        ids = [m["data"]["payload"]["ChangeEventHeader"]["recordIds"] for m in (first, second)]
        r.check(
            "aiosfstream stored replay id: resumes right after it (UPDATE, DELETE)",
            kinds == ["UPDATE", "DELETE"] and ids == [[new_id], [new_id]],
            (kinds, ids),
        )
        r.check(
            "aiosfstream replay storage advanced to the last event consumed",
            storage[CDC_CHANNEL].replay_id == second["data"]["event"]["replayId"],
            storage,
        )


# --------------------------------------------------------------------------------------
# Lark: lark-oapi


def lark_authorize(sim: Simulate, email: str, scope: str) -> tuple[str, str, str]:
    """The simulator's authorize page, approving as `email` (the `sim_user` extension).

    Returns (code, redirect_uri, code_verifier)."""
    redirect_uri = "http://127.0.0.1:9/oauth/lark/callback"
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    state = secrets.token_urlsafe(16)
    query = urlencode(
        {
            "client_id": sim.lark_app_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "sim_user": email,
        }
    )
    resp = requests.get(
        f"{sim.lark_url}/open-apis/authen/v1/authorize?{query}", allow_redirects=False, timeout=10
    )
    if resp.status_code != 302:
        raise RuntimeError(f"authorize answered {resp.status_code}: {resp.text[:200]}")
    location = urlparse(resp.headers["Location"])
    params = parse_qs(location.query)
    if params.get("state") != [state]:
        raise RuntimeError(f"authorize lost the state: {resp.headers['Location']}")
    return params["code"][0], redirect_uri, verifier


def lark_user_token(sim: Simulate, email: str, scope: str) -> str:
    """A user access token for `email`: the authorize page, then the v2 token endpoint by
    a plain POST (lark-oapi has no v2 authorization_code API)."""
    code, redirect_uri, verifier = lark_authorize(sim, email, scope)
    tokens = requests.post(
        f"{sim.lark_url}/open-apis/authen/v2/oauth/token",
        json={
            "grant_type": "authorization_code",
            "client_id": sim.lark_app_id,
            "client_secret": sim.lark_app_secret,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        timeout=10,
    ).json()
    return tokens["access_token"]


def check_lark(r: Report, sim: Simulate, ctx: dict) -> None:
    import lark_oapi as lark
    from lark_oapi.api.authen.v1 import (
        CreateOidcAccessTokenRequest,
        CreateOidcAccessTokenRequestBody,
        CreateOidcRefreshAccessTokenRequest,
        CreateOidcRefreshAccessTokenRequestBody,
        GetUserInfoRequest,
    )
    from lark_oapi.api.im.v1 import CreateMessageRequest, CreateMessageRequestBody
    from lark_oapi.api.vc.v1 import (
        ApplyReserveRequest,
        ApplyReserveRequestBody,
        DeleteReserveRequest,
        GetReserveRequest,
        ReserveMeetingSetting,
        UpdateReserveRequest,
        UpdateReserveRequestBody,
    )

    client = (
        lark.Client.builder()
        .app_id(sim.lark_app_id)
        .app_secret(sim.lark_app_secret)
        .domain(sim.lark_url)
        # Lets a request carry a user_access_token in its RequestOption (the SDK's
        # switch for user-token calls); tenant and app tokens are still fetched by the
        # SDK itself from app_id/app_secret.
        .enable_set_token(True)
        .log_level(lark.LogLevel.CRITICAL)
        .build()
    )
    trainer = next(t for t in sim.trainers if t.has_lark_account)
    stranger = next((t for t in sim.trainers if not t.has_lark_account), None)

    # Bot message with the tenant token (fetched by the SDK on its own).
    def message(to: str, text: str):
        body = (
            CreateMessageRequestBody.builder()
            .receive_id(to)
            .msg_type("text")
            .content(json.dumps({"text": text}))
            .uuid(str(uuid.uuid4()))
            .build()
        )
        request = CreateMessageRequest.builder().receive_id_type("email").request_body(body).build()
        return client.im.v1.message.create(request)

    sent = message(trainer.email, "Your Lark account is needed for remote trainings.")
    r.check(
        "lark-oapi im.v1.message.create (tenant token, receive_id_type=email): code 0",
        sent.success()
        and sent.code == 0
        and sent.data.message_id.startswith("om_")
        and sent.data.msg_type == "text"
        and json.loads(sent.data.body.content)
        == {"text": "Your Lark account is needed for remote trainings."},
        (sent.code, sent.msg, sent.raw.content[:300] if sent.raw else None),
    )
    if stranger is not None:
        refused = message(stranger.email, "hello")
        r.check(
            "lark-oapi im.v1.message.create to a non-Lark email: code 230013, not success",
            not refused.success() and refused.code == 230013,
            (refused.code, refused.msg),
        )

    # User OAuth: authorize page → code → v2 token endpoint. lark-oapi 1.7.5 has no v2
    # `authen/v2/oauth/token` authorization_code API, so this step is a plain POST.
    scope = "vc:reserve offline_access contact:user.email:readonly"
    code, redirect_uri, verifier = lark_authorize(sim, trainer.email, scope)
    resp = requests.post(
        f"{sim.lark_url}/open-apis/authen/v2/oauth/token",
        json={
            "grant_type": "authorization_code",
            "client_id": sim.lark_app_id,
            "client_secret": sim.lark_app_secret,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    tokens = resp.json()
    r.check(
        "lark v2 oauth/token (plain requests POST): code 0, access + refresh tokens",
        resp.status_code == 200
        and tokens.get("code") == 0
        and tokens.get("access_token")
        and tokens.get("refresh_token")
        and tokens.get("expires_in", 0) > 0
        and tokens.get("token_type") == "Bearer",
        {k: v for k, v in tokens.items() if "token" not in k or k == "token_type"},
    )
    user_option = lark.RequestOption.builder().user_access_token(tokens["access_token"]).build()

    # The v1 OIDC exchange IS in the SDK (app token fetched implicitly): a second code.
    code_v1, _, _ = lark_authorize(sim, trainer.email, scope)
    oidc = client.authen.v1.oidc_access_token.create(
        CreateOidcAccessTokenRequest.builder()
        .request_body(
            CreateOidcAccessTokenRequestBody.builder()
            .grant_type("authorization_code")
            .code(code_v1)
            .build()
        )
        .build()
    )
    r.check(
        "lark-oapi authen.v1.oidc_access_token.create (app token implicit): code 0, tokens",
        oidc.success() and bool(oidc.data.access_token) and bool(oidc.data.refresh_token),
        (oidc.code, oidc.msg),
    )
    info = client.authen.v1.user_info.get(
        GetUserInfoRequest.builder().build(),
        (
            lark.RequestOption.builder().user_access_token(oidc.data.access_token).build()
            if oidc.success()
            else user_option
        ),
    )
    r.check(
        "lark-oapi authen.v1.user_info.get (user token): the trainer's email and open_id",
        info.success() and info.data.email == trainer.email and info.data.open_id.startswith("ou_"),
        (info.code, info.msg),
    )

    if oidc.success():
        refreshed = client.authen.v1.oidc_refresh_access_token.create(
            CreateOidcRefreshAccessTokenRequest.builder()
            .request_body(
                CreateOidcRefreshAccessTokenRequestBody.builder()
                .grant_type("refresh_token")
                .refresh_token(oidc.data.refresh_token)
                .build()
            )
            .build()
        )
        r.check(
            "lark-oapi authen.v1.oidc_refresh_access_token.create: code 0, rotated tokens",
            refreshed.success()
            and refreshed.data.access_token not in ("", None, oidc.data.access_token)
            and refreshed.data.refresh_token not in ("", None, oidc.data.refresh_token)
            and refreshed.data.refresh_expires_in > 0,
            (refreshed.code, refreshed.msg),
        )
        reused = client.authen.v1.oidc_refresh_access_token.create(
            CreateOidcRefreshAccessTokenRequest.builder()
            .request_body(
                CreateOidcRefreshAccessTokenRequestBody.builder()
                .grant_type("refresh_token")
                .refresh_token(oidc.data.refresh_token)
                .build()
            )
            .build()
        )
        r.check(
            "lark-oapi oidc_refresh_access_token with a used refresh token: refused",
            # 20073 "has been used" (20064 once revoked): refresh tokens are single use.
            not reused.success() and reused.code in (20064, 20073),
            (reused.code, reused.msg),
        )

    # VC reservation with the user token: apply, get, update, delete.
    end_time = int(time.time()) + 3 * 3600
    applied = client.vc.v1.reserve.apply(
        ApplyReserveRequest.builder()
        .request_body(
            ApplyReserveRequestBody.builder()
            # As the SDK's own sample (samples/api/vc/v1/apply_reserve_sample.py): a
            # string of unix seconds, which is how the API documents end_time.
            .end_time(str(end_time))
            .meeting_settings(
                ReserveMeetingSetting.builder().topic("Onboarding: Third Party Cafe").build()
            )
            .build()
        )
        .build(),
        user_option,
    )
    reserve = applied.data.reserve if applied.success() else None
    r.check(
        "lark-oapi vc.v1.reserve.apply (user token): code 0, reserve with id/meeting_no/url",
        reserve is not None
        and bool(reserve.id)
        and re.fullmatch(r"\d{9}", reserve.meeting_no or "") is not None
        and (reserve.url or "").startswith("https://")
        and int(reserve.end_time) == end_time
        and reserve.meeting_settings.topic == "Onboarding: Third Party Cafe",
        (applied.code, applied.msg, applied.raw.content[:400] if applied.raw else None),
    )
    if reserve is None:
        return
    reserve_id = str(reserve.id)

    got = client.vc.v1.reserve.get(
        GetReserveRequest.builder().reserve_id(reserve_id).build(), user_option
    )
    r.check(
        "lark-oapi vc.v1.reserve.get: code 0, the same reservation",
        got.success()
        and str(got.data.reserve.id) == reserve_id
        and got.data.reserve.meeting_no == reserve.meeting_no,
        (got.code, got.msg),
    )

    new_end = end_time + 3600
    updated = client.vc.v1.reserve.update(
        UpdateReserveRequest.builder()
        .reserve_id(reserve_id)
        .request_body(
            UpdateReserveRequestBody.builder()
            .end_time(str(new_end))
            .meeting_settings(
                ReserveMeetingSetting.builder().topic("Onboarding: Third Party Bistro").build()
            )
            .build()
        )
        .build(),
        user_option,
    )
    r.check(
        "lark-oapi vc.v1.reserve.update: code 0, new end_time and topic",
        updated.success()
        and int(updated.data.reserve.end_time) == new_end
        and updated.data.reserve.meeting_settings.topic == "Onboarding: Third Party Bistro",
        (updated.code, updated.msg),
    )

    deleted = client.vc.v1.reserve.delete(
        DeleteReserveRequest.builder().reserve_id(reserve_id).build(), user_option
    )
    r.check(
        "lark-oapi vc.v1.reserve.delete: code 0",
        deleted.success() and deleted.code == 0,
        (deleted.code, deleted.msg),
    )
    gone = client.vc.v1.reserve.get(
        GetReserveRequest.builder().reserve_id(reserve_id).build(), user_option
    )
    r.check(
        "lark-oapi vc.v1.reserve.get after delete: code 121004, not success",
        not gone.success() and gone.code == 121004,
        (gone.code, gone.msg),
    )


def check_lark_calendar_and_app(r: Report, sim: Simulate, ctx: dict) -> None:
    """The calls issues 13 and 14 add, through lark-oapi's typed clients only."""
    import lark_oapi as lark
    from lark_oapi.api.calendar.v4 import (
        CalendarEvent,
        CalendarEventAttendee,
        CreateCalendarEventAttendeeRequest,
        CreateCalendarEventAttendeeRequestBody,
        CreateCalendarEventRequest,
        DeleteCalendarEventRequest,
        GetCalendarEventRequest,
        PatchCalendarEventRequest,
        PrimaryCalendarRequest,
        Reminder,
        TimeInfo,
        Vchat,
    )
    from lark_oapi.api.contact.v3 import BatchGetIdUserRequest, BatchGetIdUserRequestBody
    from lark_oapi.api.im.v1 import (
        CreateChatRequest,
        CreateChatRequestBody,
        CreateMessageRequest,
        CreateMessageRequestBody,
        IsInChatChatMembersRequest,
    )
    from lark_oapi.api.vc.v1 import (
        ApplyReserveRequest,
        ApplyReserveRequestBody,
        DeleteReserveRequest,
        ReserveMeetingSetting,
    )

    client = (
        lark.Client.builder()
        .app_id(sim.lark_app_id)
        .app_secret(sim.lark_app_secret)
        .domain(sim.lark_url)
        .enable_set_token(True)
        .log_level(lark.LogLevel.CRITICAL)
        .build()
    )
    trainer = next(t for t in sim.trainers if t.has_lark_account)
    stranger = next((t for t in sim.trainers if not t.has_lark_account), None)

    # Email → open_id with the tenant token (fetched by the SDK itself).
    emails = [trainer.email] + ([stranger.email] if stranger else [])
    ids = client.contact.v3.user.batch_get_id(
        BatchGetIdUserRequest.builder()
        .user_id_type("open_id")
        .request_body(
            BatchGetIdUserRequestBody.builder().emails(emails).include_resigned(False).build()
        )
        .build()
    )
    users = {u.email: u.user_id for u in (ids.data.user_list or [])} if ids.success() else {}
    owner = users.get(trainer.email) or ""
    r.check(
        "lark-oapi contact.v3.user.batch_get_id (tenant token): open_id for a Lark user,"
        " no user_id for an email without an account",
        ids.success()
        and owner.startswith("ou_")
        and (stranger is None or (stranger.email in users and users[stranger.email] is None)),
        (ids.code, ids.msg, ids.raw.content[:300] if ids.raw else None),
    )

    # A reservation for that owner, applied with the tenant token.
    if owner:
        applied = client.vc.v1.reserve.apply(
            ApplyReserveRequest.builder()
            .request_body(
                ApplyReserveRequestBody.builder()
                .end_time(str(int(time.time()) + 3 * 3600))
                .owner_id(owner)
                .meeting_settings(
                    ReserveMeetingSetting.builder().topic("App-hosted: Third Party Cafe").build()
                )
                .build()
            )
            .build()
        )
        r.check(
            "lark-oapi vc.v1.reserve.apply with the tenant token and owner_id: owned by the"
            " trainer",
            applied.success() and applied.data.reserve.reserve_user_id == owner,
            (applied.code, applied.msg),
        )
        if applied.success():
            deleted = client.vc.v1.reserve.delete(
                DeleteReserveRequest.builder().reserve_id(str(applied.data.reserve.id)).build()
            )
            r.check(
                "lark-oapi vc.v1.reserve.delete of the app's reservation (tenant token): code 0",
                deleted.success(),
                (deleted.code, deleted.msg),
            )

    # A group chat the app creates, and a bot message to it by chat_id.
    chat = client.im.v1.chat.create(
        CreateChatRequest.builder()
        .request_body(
            CreateChatRequestBody.builder()
            .name("Lark VC Bridge alerts")
            .chat_mode("group")
            .chat_type("private")
            .build()
        )
        .build()
    )
    chat_id = chat.data.chat_id if chat.success() else ""
    r.check(
        "lark-oapi im.v1.chat.create (tenant token): an oc_ chat id",
        chat.success() and chat_id.startswith("oc_"),
        (chat.code, chat.msg),
    )
    if chat_id:
        posted = client.im.v1.message.create(
            CreateMessageRequest.builder()
            .receive_id_type("chat_id")
            .request_body(
                CreateMessageRequestBody.builder()
                .receive_id(chat_id)
                .msg_type("text")
                .content(json.dumps({"text": "Booking a0X1 failed: Lark refused"}))
                .uuid(str(uuid.uuid4()))
                .build()
            )
            .build()
        )
        r.check(
            "lark-oapi im.v1.message.create (receive_id_type=chat_id): code 0, in that chat",
            posted.success() and posted.data.chat_id == chat_id,
            (posted.code, posted.msg),
        )
        member = client.im.v1.chat_members.is_in_chat(
            IsInChatChatMembersRequest.builder().chat_id(chat_id).build()
        )
        r.check(
            "lark-oapi im.v1.chat_members.is_in_chat (tenant token): the bot is in its chat",
            member.success() and member.data.is_in_chat is True,
            (member.code, member.msg),
        )
        nowhere = client.im.v1.chat_members.is_in_chat(
            IsInChatChatMembersRequest.builder().chat_id("oc_0000000000000000").build()
        )
        r.check(
            "lark-oapi im.v1.chat_members.is_in_chat (unknown chat): code 232006",
            not nowhere.success() and nowhere.code == 232006,
            (nowhere.code, nowhere.msg),
        )

    # Calendar v4 with the trainer's user token.
    scope = "vc:reserve offline_access calendar:calendar calendar:calendar:readonly"
    user = (
        lark.RequestOption.builder()
        .user_access_token(lark_user_token(sim, trainer.email, scope))
        .build()
    )

    primary = client.calendar.v4.calendar.primary(PrimaryCalendarRequest.builder().build(), user)
    calendars = primary.data.calendars if primary.success() else []
    calendar_id = calendars[0].calendar.calendar_id if calendars else ""
    r.check(
        "lark-oapi calendar.v4.calendar.primary (user token): the trainer's primary calendar",
        primary.success()
        and bool(calendar_id)
        and calendars[0].calendar.type == "primary"
        and calendars[0].user_id == owner,
        (primary.code, primary.msg, primary.raw.content[:300] if primary.raw else None),
    )
    if not calendar_id:
        return

    start = int(time.time()) + 48 * 3600
    link = "https://vc.larksuite.com/j/123456789"

    def at(ts: int) -> Any:
        return TimeInfo.builder().timestamp(str(ts)).timezone("Europe/Paris").build()

    def create(key: str):
        return client.calendar.v4.calendar_event.create(
            CreateCalendarEventRequest.builder()
            .calendar_id(calendar_id)
            .idempotency_key(key)
            .user_id_type("open_id")
            .request_body(
                CalendarEvent.builder()
                .summary("Remote Training: Third Party Cafe")
                .description(f"Remote training for Third Party Cafe. Join: {link}")
                .need_notification(False)
                .start_time(at(start))
                .end_time(at(start + 3600))
                .vchat(
                    Vchat.builder()
                    .vc_type("third_party")
                    .icon_type("vc")
                    .meeting_url(link)
                    .description("Join the Lark meeting")
                    .build()
                )
                .reminders([Reminder.builder().minutes(15).build()])
                .attendee_ability("can_see_others")
                .free_busy_status("busy")
                .build()
            )
            .build(),
            user,
        )

    key = str(uuid.uuid4())
    first = create(key)
    event_id = first.data.event.event_id if first.success() else ""
    r.check(
        "lark-oapi calendar.v4.calendar_event.create with idempotency_key: code 0, the event",
        first.success()
        and bool(event_id)
        and first.data.event.start_time.timestamp == str(start)
        and first.data.event.vchat.meeting_url == link,
        (first.code, first.msg, first.raw.content[:300] if first.raw else None),
    )
    if not event_id:
        return
    second = create(key)
    r.check(
        "lark-oapi calendar_event.create again with the same key: the same event",
        second.success() and second.data.event.event_id == event_id,
        (second.code, second.msg),
    )
    short = create("too-short")
    r.check(
        "lark-oapi calendar_event.create with a 9-character key: code 190002, not success",
        not short.success() and short.code == 190002,
        (short.code, short.msg),
    )

    patched = client.calendar.v4.calendar_event.patch(
        PatchCalendarEventRequest.builder()
        .calendar_id(calendar_id)
        .event_id(event_id)
        .request_body(
            CalendarEvent.builder()
            .need_notification(True)
            .start_time(at(start + 1800))
            .end_time(at(start + 5400))
            .build()
        )
        .build(),
        user,
    )
    r.check(
        "lark-oapi calendar.v4.calendar_event.patch (start and end): code 0, moved",
        patched.success()
        and patched.data.event.start_time.timestamp == str(start + 1800)
        and patched.data.event.end_time.timestamp == str(start + 5400),
        (patched.code, patched.msg),
    )

    guests = client.calendar.v4.calendar_event_attendee.create(
        CreateCalendarEventAttendeeRequest.builder()
        .calendar_id(calendar_id)
        .event_id(event_id)
        .user_id_type("open_id")
        .request_body(
            CreateCalendarEventAttendeeRequestBody.builder()
            .attendees(
                [
                    CalendarEventAttendee.builder()
                    .type("third_party")
                    .third_party_email("merchant@cafe.example")
                    .build()
                ]
            )
            .need_notification(True)
            .build()
        )
        .build(),
        user,
    )
    added = guests.data.attendees if guests.success() else []
    r.check(
        "lark-oapi calendar.v4.calendar_event_attendee.create (third_party email): code 0",
        guests.success()
        and len(added) == 1
        and added[0].type == "third_party"
        and added[0].third_party_email == "merchant@cafe.example",
        (guests.code, guests.msg, guests.raw.content[:300] if guests.raw else None),
    )

    got = client.calendar.v4.calendar_event.get(
        GetCalendarEventRequest.builder().calendar_id(calendar_id).event_id(event_id).build(),
        user,
    )
    r.check(
        "lark-oapi calendar.v4.calendar_event.get: the moved event",
        got.success()
        and got.data.event.event_id == event_id
        and got.data.event.start_time.timestamp == str(start + 1800),
        (got.code, got.msg),
    )

    def delete():
        return client.calendar.v4.calendar_event.delete(
            DeleteCalendarEventRequest.builder()
            .calendar_id(calendar_id)
            .event_id(event_id)
            .need_notification("false")
            .build(),
            user,
        )

    deleted = delete()
    r.check(
        "lark-oapi calendar.v4.calendar_event.delete (need_notification=false): code 0",
        deleted.success(),
        (deleted.code, deleted.msg),
    )
    again = delete()
    r.check(
        "lark-oapi calendar_event.delete again: code 193003 (deleted), not success",
        not again.success() and again.code == 193003,
        (again.code, again.msg),
    )


# --------------------------------------------------------------------------------------
# Lark events over the long connection: lark-oapi's own ws client

# Runs in a child process: `lark.ws.Client.start()` blocks in its own event loop for good
# (it never returns), so the parent keeps its own and ends the child when done. The child
# prints one JSON line per join event its handler sees.
WS_CHILD = r"""
import json, sys
import lark_oapi as lark

domain, app_id, app_secret = sys.argv[1:4]

def on_join(data):
    event = data.event
    print(json.dumps({
        "event_id": data.header.event_id,
        "event_type": data.header.event_type,
        "meeting_id": event.meeting.id,
        "meeting_no": event.meeting.meeting_no,
        "operator": event.operator.id.open_id,
        "user_role": event.operator.user_role,
    }), flush=True)

handler = (
    lark.EventDispatcherHandler.builder("", "")
    .register_p2_vc_meeting_join_meeting_v1(on_join)
    .build()
)
lark.ws.Client(
    app_id, app_secret, event_handler=handler, domain=domain, log_level=lark.LogLevel.ERROR
).start()
"""


def sim_events(sim: Simulate) -> dict:
    """The simulator's view of the long connection (`GET /sim/events`)."""
    return requests.get(f"{sim.lark_url}/sim/events", timeout=10).json()


def wait_for(what: str, cond: Callable[[], Any], deadline_s: float = EVENT_DEADLINE_S) -> Any:
    """Polls `cond` until it answers something truthy; raises after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def check_lark_long_connection(r: Report, sim: Simulate, ctx: dict) -> None:
    """lark-oapi's `lark.ws.Client` against simulate: it bootstraps at
    /callback/ws/endpoint, connects, pings, receives a join_meeting_v1 event of a meeting
    reserved through the SDK (started and joined through simulate's /sim/ endpoints) and
    acknowledges it with code 200, unchanged."""
    import lark_oapi as lark
    from lark_oapi.api.vc.v1 import ApplyReserveRequest, ApplyReserveRequestBody, ReserveMeetingSetting

    child = subprocess.Popen(
        [sys.executable, "-c", WS_CHILD, sim.lark_url, sim.lark_app_id, sim.lark_app_secret],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    seen: "queue.Queue[str | None]" = queue.Queue()

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            seen.put(line)
        seen.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        connected = wait_for(
            "the SDK's connection and first ping",
            lambda: (lambda s: s if s["connections_open"] >= 1 and s["pings"] >= 1 else None)(
                sim_events(sim)["stats"]
            ),
            OPEN_DEADLINE_S,
        )
        r.check(
            "lark.ws.Client: bootstrap at /callback/ws/endpoint, one connection, ping answered",
            connected["endpoint_calls"] >= 1
            and connected["connections_open"] == 1
            and connected["pongs"] >= 1
            and connected["bad_frames"] == 0,
            connected,
        )

        # A meeting reserved through the SDK with the trainer's user token.
        trainer = next(t for t in sim.trainers if t.has_lark_account)
        client = (
            lark.Client.builder()
            .app_id(sim.lark_app_id)
            .app_secret(sim.lark_app_secret)
            .domain(sim.lark_url)
            .enable_set_token(True)
            .log_level(lark.LogLevel.CRITICAL)
            .build()
        )
        user = (
            lark.RequestOption.builder()
            .user_access_token(lark_user_token(sim, trainer.email, "vc:reserve"))
            .build()
        )
        applied = client.vc.v1.reserve.apply(
            ApplyReserveRequest.builder()
            .request_body(
                ApplyReserveRequestBody.builder()
                .end_time(str(int(time.time()) + 3600))
                .meeting_settings(ReserveMeetingSetting.builder().topic("Long connection check").build())
                .build()
            )
            .build(),
            user,
        )
        if not r.check("lark-oapi vc.v1.reserve.apply for the meeting", applied.success(), (applied.code, applied.msg)):
            return
        meeting_no = applied.data.reserve.meeting_no
        owner = applied.data.reserve.reserve_user_id

        started = requests.post(
            f"{sim.lark_url}/sim/meetings/start", json={"reservation": meeting_no}, timeout=10
        )
        joined = requests.post(
            f"{sim.lark_url}/sim/meetings/{meeting_no}/join", json={"host": True}, timeout=10
        )
        r.check(
            "simulate's /sim/meetings: the reserved meeting started and the host joined",
            started.status_code == 200 and joined.status_code == 200,
            (started.text[:200], joined.text[:200]),
        )
        meeting_id = started.json()["meeting"]["id"] if started.status_code == 200 else ""

        # The SDK logs to stdout as well; the handler's line is the JSON one.
        other_lines: list[str] = []
        event: dict = {}
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while not event:
            line = seen.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                break
            if line.startswith("{"):
                event = json.loads(line)
            else:
                other_lines.append(line.rstrip())
        r.check(
            "lark.ws.Client: register_p2_vc_meeting_join_meeting_v1 handler got the host's join",
            event.get("event_type") == "vc.meeting.join_meeting_v1"
            and event.get("meeting_no") == meeting_no
            and event.get("meeting_id") == meeting_id
            and event.get("operator") == owner
            and event.get("user_role") == 2,
            event or other_lines[-5:],
        )

        def acks_for(event_id: str) -> list:
            return [a for a in sim_events(sim)["acks"] if a["event_id"] == event_id]

        join_acks = wait_for("the SDK's acknowledgement", lambda: acks_for(event.get("event_id", "")))
        joined_record = next(
            e for e in sim_events(sim)["events"] if e["event_id"] == event.get("event_id")
        )
        r.check(
            "simulator recorded the SDK's acknowledgement: code 200 with biz_rt, pushed once",
            [a["code"] for a in join_acks] == [200]
            and join_acks[0]["biz_rt"] is not None
            and joined_record["acked"]
            and joined_record["pushes"] == 1,
            (join_acks, joined_record),
        )
        # The started event has no handler in this client: the SDK answers it 500 (its
        # "processor not found"), and the simulator keeps it for redelivery.
        started_record = next(
            e for e in sim_events(sim)["events"] if e["event_type"] == "vc.meeting.meeting_started_v1"
        )
        started_acks = wait_for("the SDK's answer to the started event", lambda: acks_for(started_record["event_id"]))
        r.check(
            "an event the client has no handler for is answered 500 and stays unacknowledged",
            started_acks[0]["code"] == 500 and not started_record["acked"],
            (started_acks, started_record),
        )
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if r.failed and child.stderr is not None:
            errors = child.stderr.read()[-2000:]
            if errors:
                print(f"-- lark.ws.Client stderr (last lines):\n{errors}")


# --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bin",
        default=os.path.join("target", "debug", "lark-vc-bridge"),
        help="path to the lark-vc-bridge binary (build it first with `cargo build`)",
    )
    args = parser.parse_args()
    if not os.path.exists(args.bin):
        print(f"FAIL binary not found: {args.bin} (run `cargo build` first)")
        print("0 passed, 1 failed")
        return 1

    r = Report()
    sim = start_simulate(args.bin)
    ctx: dict = {}
    try:
        r.check(
            "simulate printed both base URLs, credentials and the seeded trainers",
            sim.sf_url.startswith("http://127.0.0.1:")
            and sim.lark_url.startswith("http://127.0.0.1:")
            and sim.sf_client_id
            and sim.sf_client_secret
            and sim.lark_app_id
            and sim.lark_app_secret
            and any(t.has_lark_account for t in sim.trainers)
            and any(not t.has_lark_account for t in sim.trainers),
            sim,
        )
        r.section("simple-salesforce", lambda: check_simple_salesforce(r, sim, ctx))
        if "sf" in ctx:
            r.section("aiosfstream-ng (CometD)", lambda: check_streaming(r, sim, ctx))
            r.section("simple-salesforce paging", lambda: check_query_paging(r, sim, ctx))
        r.section("lark-oapi", lambda: check_lark(r, sim, ctx))
        r.section(
            "lark-oapi calendar, contact, app-hosted reserve, group chat",
            lambda: check_lark_calendar_and_app(r, sim, ctx),
        )
        r.section(
            "lark-oapi ws client (events over the long connection)",
            lambda: check_lark_long_connection(r, sim, ctx),
        )
    finally:
        code = stop_simulate(sim)
    r.check("simulate stops on ctrl-c (SIGINT) with exit code 0", code == 0, code)
    if r.failed:
        print("-- simulate output (last 40 lines):")
        for line in sim.output[-40:]:
            print(f"   {line}")
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
