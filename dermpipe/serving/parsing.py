"""TF Serving REST predict requests to model input: row-format `instances` or columnar `inputs` become the decoded
image bytes and the checked metadata of each image, or a ServingError that says what is wrong with the request."""

from pydantic import ValidationError

from dermpipe.serving.images import GROUPING_FIELDS, METADATA_FIELDS, check_grouping, check_metadata, decode_b64
from dermpipe.serving.schemas import B64, Instance, PredictRequest
from dermpipe.serving.settings import ServingError

PER_IMAGE_FIELDS = (*METADATA_FIELDS, *GROUPING_FIELDS)


def columnar_instances(inputs: dict[str, list]) -> list[Instance]:
    """{"image_bytes": [{"b64": ...}, ...], optional "age_approx" / "sex" / "anatom_site_general": [one value
    (or null) per image]} -> one Instance per image."""
    extra = sorted(set(inputs) - {"image_bytes", *PER_IMAGE_FIELDS})
    images = inputs.get("image_bytes")
    if extra or not images or not all(isinstance(v, B64) for v in images):
        raise ServingError(400, f'"inputs" has keys {sorted(inputs)}; expected {{"image_bytes": [{{"b64": ...}}, '
                                f'...]}} plus optional {", ".join(PER_IMAGE_FIELDS)} lists, one value per image')
    for key in PER_IMAGE_FIELDS:
        if key in inputs and len(inputs[key]) != len(images):
            raise ServingError(400, f'"inputs": {key} has {len(inputs[key])} values for {len(images)} images; '
                                    "send one value (or null) per image")
    try:
        return [Instance(b64=image.b64, **{k: inputs[k][i] for k in PER_IMAGE_FIELDS if k in inputs})
                for i, image in enumerate(images)]
    except ValidationError as err:
        first = err.errors()[0]
        raise ServingError(400, f'"inputs": {".".join(map(str, first["loc"]))}: {first["msg"]}') from err


def parse_tf_request(body: PredictRequest, max_instances: int) -> tuple[list[bytes], list[dict], bool]:
    """(encoded images, metadata per image, whether the request was columnar) of a predict request."""
    if body.signature_name not in (None, "", "serving_default"):
        raise ServingError(400, f"signature_name {body.signature_name!r}: only serving_default (encoded "
                                f"images as b64) is served over REST")
    if (body.instances is None) == (body.inputs is None):
        raise ServingError(400, 'send exactly one of "instances" (row format) or "inputs" (columnar format), '
                                'e.g. {"instances": [{"b64": "<base64 JPEG>"}]}')
    columnar = body.inputs is not None
    if isinstance(body.inputs, dict):
        items = columnar_instances(body.inputs)
    else:
        items = body.instances if body.instances is not None else body.inputs
    if not items:
        raise ServingError(400, "no instances: the list is empty")
    if len(items) > max_instances:
        raise ServingError(413, f"{len(items)} instances in one request; the limit is {max_instances}"
                                f" (--max-instances): split the request")
    images, metas = decode_instances(items)
    return images, metas, columnar


def decode_instances(items: list[Instance]) -> tuple[list[bytes], list[dict]]:
    """The image bytes and the checked metadata of each instance."""
    images, metas = [], []
    for i, item in enumerate(items):
        what = f"instance {i}"
        encoded = item.b64 if item.b64 is not None else (item.image_bytes.b64 if item.image_bytes else None)
        if encoded is None or (item.b64 is not None and item.image_bytes is not None):
            raise ServingError(400, f'{what}: expected exactly one of {{"b64": ...}} or '
                                    f'{{"image_bytes": {{"b64": ...}}}}')
        images.append(decode_b64(encoded, what))
        metas.append({**check_metadata(item.age_approx, item.sex, item.anatom_site_general, what),
                      **check_grouping(item.lesion_id, item.patient_id, what)})
    return images, metas
