"""gcp-storage-emulator with Cloud Storage's generation preconditions, for the registry's concurrency tests.

The installed emulator ignores `ifGenerationMatch` (checked: a second create with if_generation_match=0 succeeds, as
does a write against a stale generation), so it cannot show that two deploys never overwrite each other. This
launcher wraps its object-insert handler: under one lock, a request whose `ifGenerationMatch` differs from the
object's generation (0: no object) gets HTTP 412 with Cloud Storage's error body, as the real service answers, and
the real google-cloud-storage client raises PreconditionFailed. Everything else is the emulator's own code.

    python tests/gcs_emulator.py --port 9023
"""

from __future__ import annotations

import argparse
import threading
from http import HTTPStatus

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_LOCK = threading.Lock()
_original_insert = objects.insert


def _object_name(request) -> str | None:
    if "name" in request.query:
        return request.query["name"][0]
    data = request.data if isinstance(request.data, dict) else {}
    return (data.get("meta") or data).get("name")


def _generation(storage, bucket: str, name: str) -> int:
    try:
        return int(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return 0


def insert(request, response, storage, *args, **kwargs):
    """objects.insert honouring ifGenerationMatch (atomically: check and write under one lock)."""
    wanted = request.query.get("ifGenerationMatch")
    if not wanted:
        return _original_insert(request, response, storage, *args, **kwargs)
    with _LOCK:
        name = _object_name(request)
        found = _generation(storage, request.params["bucket_name"], name) if name else 0
        if found != int(wanted[0]):
            response.status = HTTPStatus.PRECONDITION_FAILED
            message = f"At least one of the pre-conditions you specified did not hold (generation {found})."
            response.json({"error": {"code": 412, "message": message,
                                     "errors": [{"reason": "conditionNotMet", "message": message}]}})
            return None
        return _original_insert(request, response, storage, *args, **kwargs)


objects.insert = insert  # before the server module builds its routing table from `objects`


def main() -> None:
    from gcp_storage_emulator.server import create_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = create_server(args.host, args.port, in_memory=True)
    server.run()


if __name__ == "__main__":
    main()
