"""Federated-learning workloads run by the supervisor: data preparation, a Flower server and Keras clients."""
