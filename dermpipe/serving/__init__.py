"""The model server behind `dermpipe serve` (app.create_app, app.serve): one module per concept, from the settings
and input checks up to the protocols, which share the neutral dependencies and model_io modules and never import one
another; see each module's docstring."""
