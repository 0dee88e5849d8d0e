"""The served network: raw pixels in, the ten class probabilities out, with the training path's scaling inside.

A person has images as uint8 pixels of shape (28, 28), values 0-255, exactly what `load_mnist()` returns; the
training path flattens them and divides them by 255 in float32 (`data.make_split`). The served network does the
same arithmetic with built-in Keras layers: `Reshape` to 784, then `Normalization(mean=0, variance=255**2)`, which
computes (x - 0) / sqrt(255**2) = x / 255 in float32, the same correctly rounded division; so its probabilities on
raw pixels equal the trained network's on scaled ones, bit for bit. Built-in layers only, so the saved file loads
with plain `keras.saving.load_model`, no code of ours needed. The trained layers are reused (their weights, not
copies); the served network is never compiled, so no optimizer state is saved with it.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import keras

IMAGE_SHAPE = (28, 28)
PIXEL_MAX = 255.0


def serving_network(trained: keras.Model) -> keras.Model:
    """`trained` (784 scaled floats in) behind a raw-pixel input: (n, 28, 28) values 0-255 in, (n, 10) out."""
    pixels = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="pixels")
    flat = keras.layers.Reshape((IMAGE_SHAPE[0] * IMAGE_SHAPE[1],), name="flatten")(pixels)
    scaled = keras.layers.Normalization(mean=0.0, variance=PIXEL_MAX**2, name="scale_to_unit")(flat)
    probabilities = scaled
    for layer in trained.layers:
        probabilities = layer(probabilities)
    return keras.Model(pixels, probabilities, name=f"{trained.name}_raw_pixels")
