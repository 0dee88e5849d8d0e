"""The MLflow pyfunc model every finished run logs: raw pixels in, the digit and its ten probabilities out.

MLflow logs this file with the model ("models from code"), so loading the model needs Keras, NumPy and pandas,
not this project. It wraps the served Keras network (see `network.py`), saved beside it as `network.keras`.

Why a pyfunc wrapper rather than `mlflow.keras.log_model` alone: the Keras flavor's pyfunc answers with one array
per request, so it cannot give both the digit and the probabilities, and MLflow 3.17's Keras flavor fails to save
an input example (it writes the example before creating the model's folder). The network inside is still a plain
Keras file: `keras.saving.load_model` opens it for anyone who wants the Keras model itself.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

# The artifact name under which the Keras network is logged with the model.
NETWORK_ARTIFACT = "network"
IMAGE_SHAPE = (28, 28)


class DigitClassifier(mlflow.pyfunc.PythonModel):
    """Predict MNIST digits from raw pixels: an array of shape (n, 28, 28) (or (n, 784)) of values 0-255."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import keras

        self.network = keras.saving.load_model(context.artifacts[NETWORK_ARTIFACT], compile=False)

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: np.ndarray, params: dict | None = None
    ) -> pd.DataFrame:
        """One row per image: `digit` (0-9) and `probabilities` (ten floats that sum to 1)."""
        pixels = as_pixels(model_input)
        probabilities = np.asarray(self.network(pixels, training=False), dtype=np.float64)
        return pd.DataFrame({"digit": probabilities.argmax(axis=1), "probabilities": list(probabilities)})


def as_pixels(model_input: object) -> np.ndarray:
    """Images as uint8 (n, 28, 28); a ValueError that says what is wrong with anything else."""
    values = np.asarray(model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input)
    if values.ndim == 2 and values.shape[1] == IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
        values = values.reshape(-1, *IMAGE_SHAPE)
    if values.ndim != 3 or values.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (n, 28, 28) or (n, 784), got an array of shape {values.shape}")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"pixels must be 0-255 (raw, unscaled), got values from {values.min()} to {values.max()}")
    return values.astype(np.uint8)


mlflow.models.set_model(DigitClassifier())
