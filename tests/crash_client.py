"""The client process of the crash test (`tests/test_interface_crash.py`): posts offers and
follows the event stream while the server is killed and restarted.

    python -m tests.crash_client URL TOKEN PARTY FOLDER

Offer i carries `device="ev-i"` and `Idempotency-Key: k-i`; a post that fails (connection
refused or broken, 5xx) is sent again with the same key until it is answered. Each 201 is
appended to FOLDER/acked.txt as "i id" before the next post. The stream is followed through
`HttpClient.subscribe` (it reconnects with Last-Event-ID); each event is appended to
FOLDER/events.txt as "seq kind id". Posting stops when FOLDER/stop exists; the process then
waits until the stream has delivered the server's last event and writes FOLDER/done.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from atp.flexoffer import DefaultSchedule, encode
from atp.interface import HttpClient
from atp.interface.store import Event
from tests.http_support import ev_offer

_DEADLINE_S = 120.0  # the process ends by itself whatever happens to the test


def _offer(party: str, i: int, start: datetime) -> dict:
    offer = ev_offer(party)
    assert offer.start_after is not None and offer.start_before is not None and offer.default_schedule is not None
    delta = start - offer.start_after
    moved = dataclasses.replace(
        offer,
        device=f"ev-{i}",
        created_at=None,
        assignment_before=start - timedelta(minutes=15),
        start_after=start,
        start_before=offer.start_before + delta,
        default_schedule=DefaultSchedule(start, offer.default_schedule.profile, offer.default_schedule.energy),
    )
    return encode(moved)


def main(url: str, token: str, party: str, folder: Path) -> None:
    end = time.monotonic() + _DEADLINE_S
    lock = threading.Lock()
    seen: list[int] = []
    with (folder / "events.txt").open("a") as events_out:

        def on_event(event: Event) -> None:
            with lock:
                seen.append(event.seq)
                events_out.write(f"{event.seq} {event.kind} {event.offer.id}\n")
                events_out.flush()

        follower = HttpClient(url, token, party=party, retries=50, backoff_s=0.05, timeout_s=5)
        stop_stream = follower.subscribe(on_event)
        start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=5) as http, (folder / "acked.txt").open("a") as acked:
            i = 0
            while not (folder / "stop").exists() and time.monotonic() < end:
                try:
                    body, key = _offer(party, i, start), {"Idempotency-Key": f"k-{i}"}
                    answer = http.post("/flexoffer", json=body, headers=key)
                except httpx.TransportError:
                    time.sleep(0.02)
                    continue
                if answer.status_code >= 500:
                    time.sleep(0.02)
                    continue
                if answer.status_code != 201:
                    raise SystemExit(f"offer {i}: {answer.status_code} {answer.text}")
                acked.write(f"{i} {answer.json()['id']}\n")
                acked.flush()
                i += 1
        last = 0
        while time.monotonic() < end:  # the server's last event, once it answers again
            try:
                last = len(follower.events(after=0))
                break
            except Exception:
                time.sleep(0.05)
        while time.monotonic() < end:
            with lock:
                if seen and seen[-1] >= last:
                    break
            time.sleep(0.02)
        stop_stream()
        follower.close()
    (folder / "done").write_text(f"{last}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))
