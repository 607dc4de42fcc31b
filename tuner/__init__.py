"""Distributed hyperparameter search for vgan: Ray Tune + Optuna + ASHA + MLflow."""
