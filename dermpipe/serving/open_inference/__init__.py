"""The Open Inference Protocol (KServe v2 / Triton) over REST: routes.py (the APIRouter), tensors.py (v2 tensors to
model input and back), binary_tensors.py (Triton's binary tensor data extension)."""
