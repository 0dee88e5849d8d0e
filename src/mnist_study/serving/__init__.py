"""The trained network as a model a person uses: logged with every finished run, registered, served, predicted.

- `network`: the trained layers behind a raw-pixel input (the training path's scaling inside the model).
- `model`: the MLflow model (a pyfunc that answers with the digit and the ten probabilities), logged to a run.
- `registry`: versions of the registered model and the `baseline` / `champion` aliases the report sets.
- `images`: image files (PNG, JPEG) as the 28 x 28 raw pixels the model takes.
- `predict`: `python src/predict.py`, the model on image files or on the test set.
"""

# The aliases the report sets on the registered model's versions (see `report/registry.py`).
BASELINE_ALIAS = "baseline"
CHAMPION_ALIAS = "champion"
# The run tag that holds the id of the model the run logged.
MODEL_ID_TAG = "model_id"
