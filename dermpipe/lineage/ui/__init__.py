"""`dermpipe ui`: a small local web app over the lineage store (FastAPI, server-rendered Jinja2 pages, inline SVG).

Pages: runs list (/), a run with its DAG (/runs/{run id}), an artifact (/artifacts/{id}) with its report, confusion
matrix, gallery or files, a lineage graph (/lineage?ref=...), two runs side by side (/compare?a=...&b=...), the
deployed versions (/models) with each one's model card (/models/{name}/{version}/card and card.json).
Artifact files are served from /files/{artifact id}/{path}, only inside that artifact's own local file or folder.

One module per concept: display (status classes, report titles, confusion tables, parameter diffs), graph (DAG
layout and inline SVG), files (artifact files on disk and the rules for serving them), cards (deployed versions'
model cards), routes (the APIRouters) and app (create_app: templates, store, routers).
"""
