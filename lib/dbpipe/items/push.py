"""Putting restored objects back through CalDAV/CardDAV.

Writing rows into the live database would bypass everything Nextcloud does
when an object changes: sync tokens and change logs (clients would never
see the object), the search index, reminders, activity.  An HTTP PUT of each
object is exactly how a client creates it.  ``If-None-Match: *`` makes the
server refuse to touch an object that exists; --overwrite drops that guard.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from ..errors import PermissionDenied, UnavailableError, UsageError
from ..log import log, register_secret
from ..process import SHORT_TIMEOUT
from .ical import property_value
from .model import CALENDAR, Collection, Item

CONTENT_TYPES = {CALENDAR: "text/calendar; charset=utf-8"}
VCARD_TYPE = "text/vcard; charset=utf-8"
UID_CONFLICT = re.compile(rb"no-uid-conflict|uid already exists", re.IGNORECASE)
SABRE_MESSAGE = re.compile(rb"<s:message>(.*?)</s:message>", re.DOTALL)
CREATED, REPLACED, SKIPPED, FAILED = "created", "replaced", "skipped", "failed"


@dataclass(frozen=True)
class DavAccount:
    """Where and as whom to upload.  url is the DAV root, for Nextcloud
    https://cloud.example.com/remote.php/dav."""

    url: str
    user: str
    password: str = field(repr=False)
    ca_file: str | None = None
    timeout: float = SHORT_TIMEOUT

    def __post_init__(self):
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise UsageError(f"--dav-url must be an http or https URL, not {self.url!r}")
        register_secret(self.password)
        register_secret(self.authorization())

    def authorization(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode("utf-8")).decode("ascii")
        return f"Basic {token}"

    def collection_url(self, collection: Collection, owner: str) -> str:
        """Nextcloud's layout: calendars/<user>/<uri>/, addressbooks/users/<user>/<uri>/."""
        home = "calendars" if collection.kind == CALENDAR else "addressbooks/users"
        return (f"{self.url.rstrip('/')}/{home}/{urllib.parse.quote(owner, safe='')}/"
                f"{urllib.parse.quote(collection.uri, safe='')}/")


@dataclass(frozen=True)
class Outcome:
    item: Item
    status: str                     # created | replaced | skipped | failed
    detail: str = ""

    def line(self) -> str:
        where = f"{self.item.collection.kind} {self.item.collection.uri}/{self.item.uri}"
        return f"{self.status:<9}{where}  UID {self.item.uid}" + (f"  ({self.detail})" if self.detail else "")


class DavClient:
    def __init__(self, account: DavAccount):
        self.account = account
        context = ssl.create_default_context(cafile=account.ca_file) if account.ca_file else None
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=body, method=method, headers={
            "Authorization": self.account.authorization(), "User-Agent": "dbpipe nextcloud-restore-items",
            **(headers or {})})
        try:
            with self.opener.open(request, timeout=self.account.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, socket.timeout, ConnectionError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnavailableError(f"cannot reach the DAV server at {self.account.url}: {reason}") from None

    def login_failed(self, status: int) -> None:
        if status == 401:
            raise PermissionDenied(f"the DAV server refused the login of {self.account.user!r} "
                                   "(HTTP 401): check --dav-user and the app password")


def _message(status: int, body: bytes) -> str:
    found = SABRE_MESSAGE.search(body)
    text = (found.group(1) if found else body).decode("utf-8", "replace")
    text = " ".join(re.sub(r"<[^>]+>", " ", text).split())[:200]
    return f"HTTP {status}" + (f": {text}" if text else "")


class Pusher:
    """Uploads items collection by collection and reports every one."""

    def __init__(self, account: DavAccount, owner: str, overwrite: bool,
                 collection_url: str | None = None, report=print):
        self.client = DavClient(account)
        self.account, self.owner, self.overwrite = account, owner, overwrite
        self.collection_url, self.report = collection_url, report

    def push(self, groups: list[tuple[Collection, list[Item]]]) -> list[Outcome]:
        outcomes = []
        for collection, items in groups:
            url = self.collection_url or self.account.collection_url(collection, self.owner)
            missing = self._check_collection(url, collection)
            for item in items:
                outcome = Outcome(item, FAILED, missing) if missing else self._put(url, item)
                self.report(outcome.line())
                outcomes.append(outcome)
        return outcomes

    def _check_collection(self, url: str, collection: Collection) -> str:
        """Why nothing can go into this collection ('' when it exists)."""
        status, body = self.client.request("PROPFIND", url, b"", {"Depth": "0"})
        self.client.login_failed(status)
        if status in (404, 409):
            log.error("%s does not exist at %s: create it (or restore it from the trash bin) first, "
                      "or choose another one with --collection-url", collection.label(), url)
            return f"no such collection on the server: {url}"
        if status >= 300:
            return f"collection {url}: {_message(status, body)}"
        return ""

    def _put(self, collection_url: str, item: Item) -> Outcome:
        headers = {"Content-Type": CONTENT_TYPES.get(item.collection.kind, VCARD_TYPE)}
        if not self.overwrite:
            headers["If-None-Match"] = "*"
        url = collection_url + urllib.parse.quote(item.uri, safe="")
        status, body = self.client.request("PUT", url, item.data, headers)
        self.client.login_failed(status)
        if status == 201:
            return Outcome(item, CREATED)
        if 200 <= status < 300:
            return Outcome(item, REPLACED if self.overwrite else CREATED)
        if status == 412:
            return Outcome(item, SKIPPED, "exists; --overwrite replaces it")
        if UID_CONFLICT.search(body):
            return self._uid_conflict(url, item)
        return Outcome(item, FAILED, _message(status, body))

    def _uid_conflict(self, url: str, item: Item) -> Outcome:
        """The server keeps one object per UID and never changes an object's
        UID: either this UID lives under another name, or this name holds
        another item.  Neither is ours to replace, not even with --overwrite."""
        status, body = self.client.request("GET", url)
        uid = property_value(body, b"UID").strip().decode("utf-8", "replace") if status == 200 else ""
        if uid and uid != item.uid:
            return Outcome(item, SKIPPED, f"this name holds another item on the server (UID {uid}); "
                                          "push it elsewhere with --collection-url")
        return Outcome(item, SKIPPED, "an item with this UID exists under another name")


def summary(outcomes: list[Outcome]) -> str:
    counts = {status: sum(1 for o in outcomes if o.status == status)
              for status in (CREATED, REPLACED, SKIPPED, FAILED)}
    return ", ".join(f"{count} {status}" for status, count in counts.items()
                     if count or status in (CREATED, FAILED))
