"""The model server behind `dermpipe serve` (app.create_app, app.serve): one module per concept, from the settings
and input checks up to the routes; see each module's docstring."""
