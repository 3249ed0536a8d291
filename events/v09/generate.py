#!/usr/bin/env python3
"""Sample Lambda events of the 0.9 protocol (served under /v0.9), for the embedded demo atlas
(dataset id `pbmc68k_reduced`, a Zarr v3 folder). Standard library only; reuses the envelope
builders of ../generate.py.

    python3 events/v09/generate.py           # rewrite events/v09/*.json
    python3 events/v09/generate.py --check   # exit 1 if the files drifted

Exercised by tests/protocol_09.rs; usable with
`cargo lambda invoke cellucid-lambda --data-file events/v09/<file>`.
"""
import importlib.util
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("events_generate", HERE.parent / "generate.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)

BASE = "/v0.9/_cellucid"
STORE = f"{BASE}/anndata/pbmc68k_reduced.zarr"

EVENTS = {
    "url-v09-datasets": gen.url(f"{BASE}/datasets", gzip=False),
    "url-v09-range-zarr-json": gen.url(f"{STORE}/zarr.json", extra={"range": "bytes=0-99"}),
    "url-v09-range-suffix-chunk": gen.url(f"{STORE}/X/c/0/0", extra={"range": "bytes=-64"}),
    "url-v09-head-chunk": gen.url(f"{STORE}/X/c/0/0", "HEAD", gzip=False),
    "url-v09-head-range": gen.url(f"{STORE}/X/c/0/0", "HEAD", extra={"range": "bytes=0-9"}),
    "url-v09-absent-key": gen.url(f"{STORE}/X/c/99/99"),
    "v2-v09-range-zarr-json": gen.v2(f"{STORE}/zarr.json", extra={"range": "bytes=10-19"}),
    "rest-v09-range-chunk": gen.rest(f"{STORE}/X/c/1/0", extra={"range": "bytes=0-31"}),
    "rest-v09-head-chunk": gen.rest(f"{STORE}/X/c/1/0", "HEAD"),
}


def main():
    wanted = {f"{n}.json": json.dumps(e, indent=2) + "\n" for n, e in EVENTS.items()}
    if "--check" in sys.argv[1:]:
        present = {p.name: p.read_text() for p in HERE.glob("*.json")}
        stale = sorted(n for n in wanted.keys() | present.keys() if wanted.get(n) != present.get(n))
        if stale:
            print("events/v09 differs from its generator: " + ", ".join(stale))
            return 1
        print(f"{len(wanted)} events up to date")
        return 0
    for old in HERE.glob("*.json"):
        old.unlink()
    for name, text in wanted.items():
        (HERE / name).write_text(text)
    print(f"wrote {len(wanted)} events to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
