#!/usr/bin/env python3
"""Write the sample Lambda events in this directory (standard library only).

    python3 events/generate.py           # rewrite events/*.json
    python3 events/generate.py --check   # exit 1 if the files drifted from this script

Three envelope formats carry the same routes:
  v2-*.json    API Gateway HTTP API, payload format 2.0, `$default` stage (one named-stage case)
  url-*.json   Lambda function URL (also payload 2.0; what `cargo lambda watch` sends)
  rest-*.json  API Gateway REST API, payload format 1.0, stage `prod` (proxy resource)

Routes are valid for the embedded demo atlas (pbmc68k_reduced). Every file is usable with
`cargo lambda invoke cellucid-lambda --data-file events/<file>` and is exercised by
tests/lambda_events.rs.
"""
import hashlib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
VIEWER = "https://www.cellucid.com"
BROWSER_AE = "gzip, deflate, br, zstd"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36"
API_ID = "a1b2c3d4e5"
REGION = "us-east-1"
API_HOST = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
URL_ID = "abcdefghijklmnopqrstuvwxyz234567"
URL_HOST = f"{URL_ID}.lambda-url.{REGION}.on.aws"
TIME = "01/Nov/2026:12:00:00 +0000"
EPOCH = 1793534400000


def request_id(*parts):
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def headers(host, origin=VIEWER, gzip=True, extra=None):
    h = {
        "accept": "*/*",
        "host": host,
        "user-agent": UA,
        "x-forwarded-for": "198.51.100.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if origin:
        h["origin"] = origin
    if gzip:
        h["accept-encoding"] = BROWSER_AE
    h.update(extra or {})
    return h


def v2(path, method="GET", host=API_HOST, stage="$default", api_id=API_ID, **kw):
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": headers(host, **kw),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": UA,
            },
            "requestId": request_id(host, raw_path, method),
            "routeKey": "$default",
            "stage": stage,
            "time": TIME,
            "timeEpoch": EPOCH,
        },
        "isBase64Encoded": False,
    }


def url(path, method="GET", **kw):
    return v2(path, method, host=URL_HOST, api_id=URL_ID, **kw)


def rest(path, method="GET", stage="prod", **kw):
    h = headers(API_HOST, **kw)
    # REST API sends canonical header names.
    h = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in h.items()}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": h,
        "multiValueHeaders": {k: [v] for k, v in h.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": API_HOST,
            "domainPrefix": API_ID,
            "httpMethod": method,
            "identity": {"sourceIp": "198.51.100.7", "userAgent": UA},
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id("rest", stage, path, method),
            "requestTime": TIME,
            "requestTimeEpoch": EPOCH,
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "stage": stage,
        },
        "body": None,
        "isBase64Encoded": False,
    }


PREFLIGHT = {"access-control-request-method": "GET"}

EVENTS = {
    # HTTP API (payload 2.0): every kind of route.
    "v2-health": v2("/_cellucid/health"),
    "v2-info": v2("/_cellucid/info"),
    "v2-datasets": v2("/_cellucid/datasets"),
    "v2-identity": v2("/dataset_identity.json"),
    "v2-obs-manifest": v2("/obs_manifest.json"),
    "v2-var-manifest": v2("/var_manifest.json"),
    "v2-connectivity-manifest": v2("/connectivity_manifest.json"),
    "v2-points-2d-gzip": v2("/points_2d.bin"),
    "v2-points-3d": v2("/points_3d.bin", gzip=False),
    "v2-points-1d-missing": v2("/points_1d.bin"),
    "v2-obs-codes-gzip": v2("/obs/bulk_labels.codes.u8"),
    "v2-obs-codes": v2("/obs/louvain.codes.u8", gzip=False),
    "v2-obs-values-gzip": v2("/obs/n_counts.values.f32"),
    "v2-obs-outliers": v2("/obs/louvain.outliers.f32", gzip=False),
    "v2-gene-gzip": v2("/var/HES4.values.f32"),
    "v2-gene": v2("/var/CD2.values.f32", gzip=False),
    "v2-edges-src-gzip": v2("/connectivity/edges.src.bin"),
    "v2-edges-dst": v2("/connectivity/edges.dst.bin", gzip=False),
    "v2-vectors-gzip": v2("/vectors/velocity_umap_2d.bin"),
    "v2-vectors-gzfile": v2("/vectors/velocity_umap_2d.bin.gz"),
    "v2-not-found": v2("/nonexistent_route.json"),
    "v2-gene-not-found": v2("/var/__no_such_gene__.values.f32"),
    "v2-obs-not-found": v2("/obs/__no_such_field__.values.f32"),
    "v2-options": v2("/points_3d.bin", "OPTIONS", gzip=False, extra=PREFLIGHT),
    "v2-head-points-3d": v2("/points_3d.bin", "HEAD"),
    "v2-head-gene": v2("/var/HES4.values.f32", "HEAD", gzip=False),
    "v2-post": v2("/points_3d.bin", "POST"),
    "v2-dataset-prefix": v2("/pbmc68k_reduced/points_2d.bin"),
    "v2-origin-refused": v2("/_cellucid/health", origin="https://evil.example"),
    "v2-no-origin": v2("/obs/bulk_labels.codes.u8", origin=None),
    "v2-named-stage": v2("/points_2d.bin", stage="prod"),
    # Function URL: the local loop (`cargo lambda watch`) and the default deployment.
    "url-health": url("/_cellucid/health"),
    "url-info": url("/_cellucid/info"),
    "url-identity": url("/dataset_identity.json"),
    "url-points-3d-gzip": url("/points_3d.bin"),
    "url-obs-codes-gzip": url("/obs/bulk_labels.codes.u8"),
    "url-gene-gzip": url("/var/HES4.values.f32"),
    "url-edges-src": url("/connectivity/edges.src.bin", gzip=False),
    "url-vectors": url("/vectors/velocity_umap_2d.bin", gzip=False),
    "url-not-found": url("/nonexistent_route.json"),
    "url-options": url("/dataset_identity.json", "OPTIONS", gzip=False, extra=PREFLIGHT),
    "url-head": url("/points_2d.bin", "HEAD"),
    # REST API (payload 1.0), stage `prod`: the stage prefix is removed before routing.
    "rest-health": rest("/_cellucid/health"),
    "rest-info": rest("/_cellucid/info"),
    "rest-identity": rest("/dataset_identity.json"),
    "rest-points-3d-gzip": rest("/points_3d.bin"),
    "rest-obs-codes": rest("/obs/phase.codes.u8", gzip=False),
    "rest-gene-gzip": rest("/var/TKT.values.f32"),
    "rest-edges-dst-gzip": rest("/connectivity/edges.dst.bin"),
    "rest-not-found": rest("/nonexistent_route.json"),
    "rest-options": rest("/points_3d.bin", "OPTIONS", gzip=False, extra=PREFLIGHT),
    "rest-head": rest("/points_3d.bin", "HEAD", gzip=False),
}


def main():
    wanted = {f"{name}.json": json.dumps(event, indent=2) + "\n" for name, event in EVENTS.items()}
    if "--check" in sys.argv[1:]:
        present = {p.name: p.read_text() for p in HERE.glob("*.json")}
        stale = sorted(n for n in wanted.keys() | present.keys() if wanted.get(n) != present.get(n))
        if stale:
            print("events/ differs from events/generate.py: " + ", ".join(stale))
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
