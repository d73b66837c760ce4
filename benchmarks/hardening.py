"""What hostile or large requests cost a served receiver (issue 14's findings, measured again).

    python -m benchmarks.hardening                 # 20 000 stored offers
    python -m benchmarks.hardening --offers 55000

A receiver (in-memory store, `ServerThread`, real socket) holding `--offers` offers of two
parties; one client measures, over HTTP:

- an offer of a few hundred bytes declaring a slice of 10^8 and 10^9 steps: answer, time and
  the peak memory the server allocated for it (tracemalloc, server and client share the process);
- `GET /flexoffer`: one page (the default size), and every page as `HttpClient.active` reads them;
- a one-offer GET while another thread reads every page (the wait the issue measured at 4.3 s);
- `GET /bill` of a party with one measurement in the year 1000 stored in-process (the HTTP
  route refuses it).

Times are wall-clock on this machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import httpx

from atp.flexoffer import Measurement, encode, offer_from_json
from atp.fman import DelegatedContract
from atp.interface import HttpClient, OfferStore, create_app
from atp.interface.serve import ServerThread
from atp.services.providers import ContractBook, bill_provider, store_kpi_provider

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flexoffers" / "ev_charge.json"
NOW = datetime(2026, 11, 25, 17, 40, tzinfo=UTC)
PARTIES = {"token-of-foss-p017-0123456789": "foss-p017", "token-of-foss-p018-0123456789": "foss-p018"}
TOKEN = "token-of-foss-p017-0123456789"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=20_000, help="offers stored before measuring")
    args = parser.parse_args(argv)
    base = dataclasses.replace(offer_from_json(EXAMPLE.read_text()), id=None)
    store = OfferStore("fman", clock=lambda: NOW)
    book = ContractBook({"foss-p017": DelegatedContract(activation_eur_per_kwh=0.1)})
    app = create_app(store, tokens=PARTIES, kpi=store_kpi_provider(store), bill=bill_provider(store, book))
    t0 = time.perf_counter()
    for i in range(args.offers):
        issuer = "foss-p017" if i % 2 else "foss-p018"
        store.submit(issuer, dataclasses.replace(base, issuer=issuer))
    print(f"stored {args.offers} offers in-process in {time.perf_counter() - t0:.1f} s")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, headers=auth, timeout=120) as http:
        http.get("/flexoffer", params={"limit": 1})  # warm up: the thread pool, the first connection
        for steps in (10**8, 10**9):
            data = encode(dataclasses.replace(base, issuer="foss-p017"))
            data["profiles"][0]["slices"][0]["duration"] = steps
            tracemalloc.start()
            t = time.perf_counter()
            response = http.post("/flexoffer", json=data)
            elapsed = time.perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"offer of {steps:.0e} steps: {response.status_code} in {_ms(elapsed)}, peak {peak / 2**20:.1f} MiB")
        t = time.perf_counter()
        page = http.get("/flexoffer")
        print(f"GET /flexoffer (one page): {len(page.json())} offers, {len(page.content)} bytes, "
              f"{_ms(time.perf_counter() - t)}")  # fmt: skip
        client = HttpClient(srv.url, TOKEN, party="foss-p017", timeout_s=120)
        t = time.perf_counter()
        everything = client.active()
        print(f"HttpClient.active (every page): {len(everything)} offers in {time.perf_counter() - t:.2f} s")
        one = everything[0].id
        waits: list[float] = []
        reader = threading.Thread(target=client.active)
        reader.start()
        while reader.is_alive():
            t = time.perf_counter()
            http.get(f"/flexoffer/{one}")
            waits.append(time.perf_counter() - t)
        reader.join()
        print(f"one-offer GET while every page is read: median {_ms(statistics.median(waits))}, "
              f"max {_ms(max(waits))} over {len(waits)} GETs")  # fmt: skip
        client.close()
        store.post_measurements("foss-p017", [Measurement(one or "", "M-017", datetime(1000, 1, 1, tzinfo=UTC), 1.0)])
        t = time.perf_counter()
        bill = http.get("/bill")
        print(f"GET /bill with a measurement in the year 1000: {bill.status_code} in {_ms(time.perf_counter() - t)}, "
              f"{len(bill.json()['not_billed'])} not billed")  # fmt: skip
        t = time.perf_counter()
        kpi = http.get("/kpi")
        print(f"GET /kpi of one party: {kpi.status_code} in {_ms(time.perf_counter() - t)}")


if __name__ == "__main__":
    main()
