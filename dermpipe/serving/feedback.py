"""POST /v1/feedback and POST /v2/models/{name}/feedback: ground truth (biopsy, consensus, follow-up) for logged
predictions, by request id, validated and stored beside the prediction log (dermpipe.serving.feedback_store).

200: at least one label was accepted or already known; the body lists every label's outcome. 400 ({"error": ...,
plus the same outcome list}): no label is valid, or the body is not {"labels": [...]}. 404: another model's name
(v2 path), or a server started without --log-root (no prediction log, so nothing to label). 413: too many labels in
one request. 503: the label store cannot be written (storage outage); nothing was stored. TF Serving's gRPC API has
no such call, so feedback is REST only."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from dermpipe.serving.dependencies import ServiceDep
from dermpipe.serving.feedback_store import submit_feedback
from dermpipe.serving.service import Service
from dermpipe.serving.settings import ServingError

MAX_LABELS = 10_000  # per request: a submission is validated against the whole log and written as one file


class FeedbackRequest(BaseModel):
    """Labels for logged predictions: each {"request_id", "diagnosis" (MEL NV BCC AK BKL DF VASC SCC), "source"
    (biopsy | consensus | follow-up), "date" (YYYY-MM-DD)}; items are validated one by one, so a bad item is
    refused with its reason and the others still count."""

    model_config = ConfigDict(extra="forbid")
    labels: list[dict[str, Any]]


def _store(service: Service, items: list[dict[str, Any]]) -> dict:
    settings = service.settings
    if service.predlog is not None:
        service.predlog.flush()  # predictions answered moments ago are in the log before their ids are checked
    with service.feedback_lock:  # one submission at a time: a conflict check and its write are not interleaved
        try:
            result = submit_feedback(settings.log_root, settings.model_name, items)
        except (OSError, ValueError) as err:
            raise ServingError(503, f"feedback: the label store under {settings.log_root}/{settings.model_name}"
                                    f"/labels could not be read or written ({err}); nothing was stored: retry") from err
    body = result.to_dict()
    body["submission"] = None if result.uri is None else result.uri.rsplit("/", 1)[-1]
    del body["uri"]
    return body


async def record_feedback(service: Service, body: FeedbackRequest):
    if not service.settings.log_root:
        raise ServingError(404, "feedback needs the prediction log: this server was started without --log-root, "
                                "so no prediction can be labelled")
    if not body.labels:
        raise ServingError(400, 'no labels: send {"labels": [{"request_id": ..., "diagnosis": ..., "source": ..., '
                                '"date": "YYYY-MM-DD"}]}')
    if len(body.labels) > MAX_LABELS:
        raise ServingError(413, f"{len(body.labels)} labels in one request; the limit is {MAX_LABELS}: split it")
    result = await run_in_threadpool(_store, service, body.labels)
    if result["accepted"] + result["duplicate"] == 0:
        service.telemetry.reject(400)
        first = next(o["reason"] for o in result["labels"])
        return JSONResponse({"error": f"no valid label among {len(body.labels)}; the first: {first}", **result},
                            status_code=400)
    return result


feedback = APIRouter()


@feedback.post("/v1/feedback", summary="Ground truth for logged predictions")
async def post_feedback(service: ServiceDep, body: FeedbackRequest):
    return await record_feedback(service, body)


@feedback.post("/v2/models/{name}/feedback", summary="Ground truth for logged predictions (v2 path)")
async def post_model_feedback(service: ServiceDep, name: str, body: FeedbackRequest):
    service.check_name(name)
    return await record_feedback(service, body)
