"""Reading back what a study left in MLflow, for the study-level tests."""


def trial_runs(uri: str, experiment: str, study: str | None = None):
    """(client, the experiment's trial runs, of one study if given); none yet if the experiment is not made."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return client, []
    runs = client.search_runs([exp.experiment_id], f"tags.study = '{study}'" if study else "", max_results=1000)
    return client, [r for r in runs if "trial_id" in r.data.tags]


def history(client, run, key: str = "val_auc_roc") -> list[tuple[int, int]]:
    """(step, timestamp in ms) of every value logged for key, by step."""
    return sorted((m.step, m.timestamp) for m in client.get_metric_history(run.info.run_id, key))


def steps(client, run, key: str = "val_auc_roc") -> list[int]:
    return [s for s, _ in history(client, run, key)]
