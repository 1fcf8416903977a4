"""predict: a trained model's words on the test images, as UFO JSON (with scores, for the ensemble)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import component


@component
def predict(model: Input[Model], dataset: Input[Dataset], split: str, predictions: Output[Artifact]) -> int:
    """Predict every image of `split`; returns the number of words found."""
    from model.data.ufo import write_ufo
    from model.predict import predict as run_prediction

    images = run_prediction(f"{model.path}/best.pt", dataset.path, split=split, scores=True)
    write_ufo(images, predictions.path)
    words = sum(len(w) for w in images.values())
    predictions.metadata.update({"images": len(images), "words": words, "fold": model.metadata.get("fold")})
    print(f"predicted {words} words on {len(images)} {split} images", flush=True)
    return words
