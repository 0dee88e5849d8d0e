"""The trained network as a model a person uses: logged with every finished run, registered, served, predicted.

- `network`: the trained layers behind a raw-pixel input (the training path's scaling inside the model).
- `model`: the MLflow model (a pyfunc that answers with the digit and the ten probabilities), logged to a run.
- `registry`: versions of the registered model and the `baseline` / `champion` aliases the report sets.
- `images`: image files (PNG, JPEG) as the 28 x 28 raw pixels the model takes.
"""
