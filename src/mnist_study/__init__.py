"""An experiment-tracked hyperparameter study of the Keras MNIST tutorial network."""
