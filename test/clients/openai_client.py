"""Drives a running server with the official `openai` Python package (pinned in training/requirements.txt).

Spawned by test/clients/openai.test.ts with training/.venv's python:
    python openai_client.py URL API_KEY IMAGE_BASE64
Prints one JSON object: what the client got back (vectors as the client decoded them, models, the exception class
of each refused request), which the node test compares with our own /v1/embeddings answers.
"""

import json
import sys

import openai


def main() -> None:
    url, key, image_b64 = sys.argv[1:4]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    bare = openai.OpenAI(base_url=url, api_key=key, max_retries=0)  # base_url without /v1
    data_uri = f"data:image/png;base64,{image_b64}"
    texts = ["a red circle", "two blue squares"]
    out: dict = {"version": openai.__version__}

    page = client.models.list()
    out["models"] = [m.model_dump() for m in page.data]
    out["models_bare"] = [m.id for m in bare.models.list().data]
    out["model"] = client.models.retrieve(page.data[0].id).model_dump()

    def vectors(r) -> list:
        return [d.embedding for d in r.data]

    float_r = client.embeddings.create(model="micro", input=texts, encoding_format="float")
    out["text_float"] = vectors(float_r)
    out["usage"] = float_r.usage.model_dump()
    out["response_model"] = float_r.model
    # no encoding_format: the client asks for base64 and decodes it into floats itself
    out["text_default"] = vectors(client.embeddings.create(model="micro", input=texts))
    out["text_bare"] = vectors(bare.embeddings.create(model="micro", input=texts))
    out["image_float"] = vectors(client.embeddings.create(model="micro", input=data_uri, encoding_format="float"))
    out["image_default"] = vectors(client.embeddings.create(model="micro", input=[data_uri]))
    out["image_modality"] = vectors(
        client.embeddings.create(model="micro", input=[image_b64], extra_body={"modality": "image"})
    )
    out["mixed_objects"] = vectors(
        client.embeddings.create(model="micro", input=[{"image": data_uri}, {"text": texts[0]}])  # type: ignore[list-item]
    )

    errors = {}
    calls = {
        "dimensions": lambda: client.embeddings.create(model="micro", input="x", dimensions=8),
        "unknown_model": lambda: client.embeddings.create(model="nope", input="x"),
        "unknown_model_retrieve": lambda: client.models.retrieve("nope"),
        "wrong_key": lambda: openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list(),
    }
    for name, call in calls.items():
        try:
            call()
            errors[name] = None
        except openai.APIStatusError as e:
            body = e.body if isinstance(e.body, dict) else {}
            errors[name] = {"class": type(e).__name__, "status": e.status_code, "param": body.get("param")}
    out["errors"] = errors
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
