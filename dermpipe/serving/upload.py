"""POST /predict: one image uploaded as multipart form data (a browser form, `curl -F`) with its metadata as form
fields, answered with the class probabilities by name, the clinical decision fields and the request id."""

import uuid

from fastapi import APIRouter, File, Form, UploadFile

from dermpipe.serving.dependencies import ServiceDep, prediction_row
from dermpipe.serving.images import check_grouping, check_metadata
from dermpipe.serving.schemas import PredictFileResponse

upload = APIRouter()


@upload.post("/predict", summary="Predict one uploaded image (multipart)", response_model=PredictFileResponse)
async def predict_file(service: ServiceDep, image: UploadFile = File(..., description="JPEG or PNG"),
                       age_approx: float | None = Form(None), sex: str | None = Form(None),
                       anatom_site_general: str | None = Form(None),
                       operating_point: str | None = Form(None), lesion_id: str | None = Form(None),
                       patient_id: str | None = Form(None)) -> dict:
    meta = {**check_metadata(age_approx, sex or None, anatom_site_general or None, "form"),
            **check_grouping(lesion_id or None, patient_id or None, "form")}
    data = await image.read()
    model = service.manager.get(None)
    request_id = uuid.uuid4().hex
    probabilities, _, _, decisions = await service.predict_images(model, [data], [meta], request_id,
                                                                  operating_point or None)
    return {**prediction_row(probabilities[0]), **decisions[0], "request_id": request_id, "model_name": model.name,
            "model_version": model.version, "gate_override": model.gate_override}
